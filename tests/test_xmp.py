"""Core XMP reading: packets found in a file's bytes, properties read by namespace URI in
each RDF form, history events, and damaged packets reported instead of raised."""

from __future__ import annotations

import numpy as np
from conftest import encode, jpeg

from refundlens import load_photo
from refundlens.xmp import (
    NS_DC,
    NS_EXIF,
    NS_IPTC_EXT,
    NS_STEVT,
    NS_TC260,
    NS_XMP,
    XmpPacket,
    find_packets,
    parse_xmp,
    split_tag,
)

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"


def packet(body: str, *, attrs: str = "", namespaces: str = "") -> str:
    return (f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
            f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF}">'
            f'<rdf:Description rdf:about="" {namespaces} {attrs}>{body}</rdf:Description>'
            f'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>')


def test_split_tag_drops_a_trailing_slash():
    assert split_tag("{http://ns.adobe.com/xap/1.0/}CreatorTool") == (NS_XMP, "CreatorTool")
    assert split_tag(f"{{{RDF}}}li") == (RDF, "li")  # "#"-terminated URIs stay as written
    assert split_tag("plain") == ("", "plain")


def test_attribute_element_resource_and_array_forms():
    text = packet(
        '<dc:title><rdf:Alt><rdf:li xml:lang="x-default">Cup</rdf:li></rdf:Alt></dc:title>'
        '<dc:subject><rdf:Bag><rdf:li>a</rdf:li><rdf:li>b</rdf:li></rdf:Bag></dc:subject>'
        f'<ie:DigitalSourceType rdf:resource="http://cv.iptc.org/x/digitalCapture"/>'
        '<exif:UserComment>  hello  </exif:UserComment>',
        attrs='xmp:CreatorTool="GIMP 2.10"',
        namespaces=(f'xmlns:dc="{NS_DC}/" xmlns:xmp="{NS_XMP}/" xmlns:exif="{NS_EXIF}/" '
                    f'xmlns:ie="{NS_IPTC_EXT}/"'))
    parsed = parse_xmp(text)
    assert parsed.error is None
    assert parsed.values(NS_XMP, "CreatorTool") == ["GIMP 2.10"]
    assert parsed.values(NS_DC, "title") == ["Cup"]
    assert parsed.values(NS_DC, "subject") == ["a; b"]
    assert parsed.values(NS_IPTC_EXT, "DigitalSourceType") == [
        "http://cv.iptc.org/x/digitalCapture"]
    assert parsed.values(NS_EXIF, "UserComment") == ["hello"]
    forms = {(p.name, p.form) for p in parsed.properties}
    assert ("CreatorTool", "attribute") in forms and ("UserComment", "element") in forms


def test_properties_are_matched_by_namespace_not_prefix():
    text = packet("<aigc:AIGC>{}</aigc:AIGC><TC260:AIGC>not the label</TC260:AIGC>",
                  namespaces=f'xmlns:aigc="{NS_TC260}/" xmlns:TC260="http://example.com/x/"')
    parsed = parse_xmp(text)
    assert parsed.values(NS_TC260, "AIGC") == ["{}"]
    assert parsed.values("http://example.com/x", "AIGC") == ["not the label"]


def test_requested_structure_comes_back_whole_and_others_field_by_field():
    body = ('<TC260:AIGC rdf:parseType="Resource"><TC260:Label>1</TC260:Label>'
            '<TC260:ProduceID>p-1</TC260:ProduceID></TC260:AIGC>'
            '<ie:LocationCreated rdf:parseType="Resource"><ie:City>Hangzhou</ie:City>'
            '</ie:LocationCreated>')
    text = packet(body, namespaces=f'xmlns:TC260="{NS_TC260}/" xmlns:ie="{NS_IPTC_EXT}/"')
    whole = parse_xmp(text, structures=[(NS_TC260, "AIGC")])
    [structure] = [p for p in whole.properties if p.form == "structure"]
    assert (structure.ns, structure.name) == (NS_TC260, "AIGC")
    assert structure.value == {"Label": "1", "ProduceID": "p-1"}
    assert whole.values(NS_TC260, "Label") == []  # its fields are not repeated
    assert whole.values(NS_IPTC_EXT, "City") == ["Hangzhou"]
    by_field = parse_xmp(text)
    assert by_field.values(NS_TC260, "Label") == ["1"]
    assert not any(p.form == "structure" for p in by_field.properties)


def test_history_events():
    body = ('<xmpMM:History><rdf:Seq>'
            '<rdf:li stEvt:action="saved" stEvt:softwareAgent="Adobe Photoshop 25.0"/>'
            '<rdf:li rdf:parseType="Resource"><stEvt:action>converted</stEvt:action>'
            '<stEvt:changed>/metadata</stEvt:changed></rdf:li>'
            '</rdf:Seq></xmpMM:History>')
    text = packet(body, namespaces=('xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/" '
                                    f'xmlns:stEvt="{NS_STEVT}"'))
    assert parse_xmp(text).history == (
        {"action": "saved", "softwareAgent": "Adobe Photoshop 25.0"},
        {"action": "converted", "changed": "/metadata"})


def test_damaged_or_hostile_packet_is_an_error_not_an_exception():
    damaged = parse_xmp(packet("<dc:title>x</dc:title>")[:-60] + "<broken")
    assert damaged == XmpPacket(error=damaged.error) and damaged.error.startswith("ParseError")
    bomb = ('<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
            '<x:xmpmeta xmlns:x="adobe:ns:meta/">&b;</x:xmpmeta>')
    refused = parse_xmp(bomb)  # defusedxml refuses entity declarations
    assert refused.properties == () and refused.error


def test_find_packets_scans_the_bytes_and_keeps_each_packet_once():
    a, b = packet("<dc:title>one</dc:title>"), packet("<dc:title>two</dc:title>")
    data = b"\x00junk" + a.encode() + b"more junk" + b.encode()
    found = find_packets(data, surfaced=[a])
    # the parser's copy of the first packet contains the scan's: kept once, whole
    assert found == (a, b[b.index("<x:xmpmeta"):b.index("<?xpacket end")])
    bare = b'<rdf:RDF xmlns:rdf="x"><rdf:Description/></rdf:RDF>'
    assert find_packets(b"abc" + bare + b"def") == (bare.decode(),)
    assert find_packets(b"no metadata here") == ()


def test_load_photo_finds_the_packet_in_jpeg_png_and_webp():
    text = packet("<dc:title>x</dc:title>", namespaces=f'xmlns:dc="{NS_DC}/"')
    pixels = np.full((16, 16, 3), 128, np.uint8)
    for data in (jpeg(pixels, xmp=text.encode()), encode(pixels, "WEBP", xmp=text.encode())):
        photo = load_photo(data)
        assert len(photo.xmp) == 1
        assert parse_xmp(photo.xmp[0]).values(NS_DC, "title") == ["x"]
