"""XMP metadata: finding packets in a file's bytes and reading their properties by namespace.

XMP (ISO 16684-1) is RDF/XML carried in a format-specific place: a JPEG APP1 segment
(``http://ns.adobe.com/xap/1.0/``, plus extended XMP in further segments), a PNG ``iTXt``
chunk ``XML:com.adobe.xmp``, a WebP ``XMP `` chunk, an ``mime`` item of a HEIF/AVIF file,
TIFF tag 700. :func:`refundlens.load_photo` takes what Pillow surfaces and passes it,
with the raw bytes, to :func:`find_packets`, which also scans the bytes for packets Pillow
does not surface; the photo keeps them as text in ``Photo.xmp``. Detectors read them with
:func:`parse_xmp`, which resolves prefixes to namespace URIs (a label written as
``aigc:AIGC`` with ``xmlns:aigc`` bound to the TC260 namespace is the TC260 label) and
never raises: a packet that does not parse comes back with its ``error`` set, so a
caller can fall back to patterns for the few values it needs.

References:
    * Adobe XMP Specification Part 1 (2012), §7 (RDF serialisation: simple, structure and
      array values, the attribute and element forms); Part 2, ``xmpMM:History``
      (``stEvt`` resource events); Part 3, §1.1 (storage in file formats).
    * ISO 16684-1:2019, Graphic technology — Extensible metadata platform (XMP).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from xml.etree.ElementTree import ParseError

from defusedxml import ElementTree as SafeET

__all__ = ["NS_DC", "NS_DCTERMS", "NS_EXIF", "NS_IPTC_EXT", "NS_PHOTOSHOP", "NS_RDF",
           "NS_STEVT", "NS_TC260", "NS_XMP", "NS_XMPMM", "XmpPacket", "XmpProperty",
           "find_packets", "parse_xmp", "split_tag"]

# Namespace URIs as :func:`split_tag` gives them: without a trailing "/" (files write both
# forms), the "#"-terminated ones as written.
NS_TC260 = "http://www.tc260.org.cn/ns/AIGC/1.0"  # GB 45438-2025 implicit label
NS_IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29"
NS_XMP = "http://ns.adobe.com/xap/1.0"
NS_XMPMM = "http://ns.adobe.com/xap/1.0/mm"
NS_STEVT = "http://ns.adobe.com/xap/1.0/sType/ResourceEvent#"
NS_DC = "http://purl.org/dc/elements/1.1"
NS_DCTERMS = "http://purl.org/dc/terms"
NS_EXIF = "http://ns.adobe.com/exif/1.0"
NS_PHOTOSHOP = "http://ns.adobe.com/photoshop/1.0"
NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"

#: Namespaces of the RDF/XML scaffolding, not of properties.
_SKIP_NS = {NS_RDF, "http://www.w3.org/XML/1998/namespace", "adobe:ns:meta"}
_CONTAINERS = {(NS_RDF, name) for name in ("Alt", "Seq", "Bag")}
_PACKET = re.compile(rb"<x:xmpmeta[\s>].*?</x:xmpmeta>", re.S)
_RDF_ONLY = re.compile(rb"<rdf:RDF[\s>].*?</rdf:RDF>", re.S)


@dataclass(frozen=True)
class XmpProperty:
    """One property: namespace URI (see :func:`split_tag`), local name, value and form.

    ``form`` is ``"attribute"`` (``ns:Name="v"`` on an ``rdf:Description``), ``"element"``
    (``<ns:Name>v</ns:Name>``; an ``rdf:resource`` URI; an array's items joined by "; ")
    or ``"structure"`` (only for the names a caller asks :func:`parse_xmp` for: the value is
    then a dict of the structure's fields in its own namespace).
    """

    ns: str
    name: str
    value: str | dict[str, str]
    form: str


@dataclass(frozen=True)
class XmpPacket:
    """What one packet says: its properties in document order, its ``xmpMM:History``
    events (``stEvt`` fields by local name) and, when it does not parse, why."""

    properties: tuple[XmpProperty, ...] = ()
    history: tuple[dict[str, str], ...] = ()
    error: str | None = None

    def values(self, ns: str, name: str) -> list[str]:
        """The text values of property ``name`` in namespace ``ns``, in document order."""
        return [p.value for p in self.properties
                if p.ns == ns and p.name == name and isinstance(p.value, str)]


@lru_cache(maxsize=2048)  # a packet repeats a few dozen tags many times
def split_tag(tag: str) -> tuple[str, str]:
    """ElementTree ``"{ns}name"`` -> (namespace without a trailing "/", local name)."""
    if tag[:1] == "{":
        ns, _, local = tag[1:].partition("}")
        return ns.rstrip("/"), local
    return "", tag


def find_packets(data: bytes, *, surfaced: Iterable[str] = ()) -> tuple[str, ...]:
    """Every XMP packet of a file: those its parser ``surfaced`` and those a scan of the raw
    bytes finds (``x:xmpmeta`` packets, bare ``rdf:RDF``), decoded as UTF-8.

    The scan finds packets format parsers do not surface (HEIF/AVIF item data, extended
    XMP, packets in odd places). A packet contained in another is dropped, so the parser's
    copy and the scan's copy of one packet are kept once.
    """
    packets = list(surfaced)
    for pattern in (_PACKET, _RDF_ONLY):
        for match in pattern.finditer(data):
            packets.append(match.group(0).decode("utf-8", "replace"))
    unique: list[str] = []
    for packet in packets:
        if not any(packet in seen for seen in unique):
            unique = [seen for seen in unique if seen not in packet] + [packet]
    return tuple(unique)


def parse_xmp(packet: str, *, structures: Iterable[tuple[str, str]] = ()) -> XmpPacket:
    """The properties of one packet (see :class:`XmpProperty`); never raises.

    Args:
        packet: the packet's text (a BOM, NULs and padding around it are ignored).
        structures: (namespace, name) of properties to return whole when they hold a
            structure, as one ``"structure"`` property whose value maps its fields (in the
            same namespace, elements and attributes) to their text; those fields are then
            not returned on their own. Other structures' fields come back one by one.
    """
    return _parse(packet, frozenset(structures))


@lru_cache(maxsize=64)  # several detectors read the same packets of one photo
def _parse(packet: str, structures: frozenset[tuple[str, str]]) -> XmpPacket:
    text = packet.strip("\x00\ufeff \t\r\n")
    try:
        root = SafeET.fromstring(text)
    except (ParseError, ValueError) as exc:  # defusedxml's refusals are ValueErrors
        return XmpPacket(error=f"{type(exc).__name__}: {exc}")
    properties: list[XmpProperty] = []
    inside: set[int] = set()  # fields of a structure returned whole
    for el in root.iter():
        ns, local = split_tag(el.tag)
        for key, value in el.attrib.items():
            ans, alocal = split_tag(key)
            if ans and ans not in _SKIP_NS:
                properties.append(XmpProperty(ans, alocal, value, "attribute"))
        if ns in _SKIP_NS or id(el) in inside:
            continue
        children = list(el)
        resource = el.attrib.get(f"{{{NS_RDF}}}resource")
        if resource:
            value = resource
        elif not children:
            value = (el.text or "").strip()
        elif split_tag(children[0].tag) in _CONTAINERS:
            items = [(li.text or "").strip() for li in children[0] if not len(li)]
            value = "; ".join(item for item in items if item)
        elif (ns, local) in structures:
            fields: dict[str, str] = {}
            for sub in el.iter():
                sns, slocal = split_tag(sub.tag)
                if sns == ns and sub is not el and not len(sub):
                    fields[slocal] = (sub.text or "").strip()
                    inside.add(id(sub))
                fields.update({split_tag(k)[1]: v for k, v in sub.attrib.items()
                               if split_tag(k)[0] == ns})
            properties.append(XmpProperty(ns, local, fields, "structure"))
            continue
        else:
            continue  # a structure: its fields are visited on their own
        if value:
            properties.append(XmpProperty(ns, local, value, "element"))
    history = []
    for events in root.iter(f"{{{NS_XMPMM}/}}History"):
        for li in events.iter(f"{{{NS_RDF}}}li"):
            event = {split_tag(k)[1]: v for k, v in li.attrib.items()
                     if split_tag(k)[0] == NS_STEVT}
            event.update({split_tag(c.tag)[1]: (c.text or "").strip() for c in li
                          if split_tag(c.tag)[0] == NS_STEVT})
            if event:
                history.append(event)
    return XmpPacket(tuple(properties), tuple(history))
