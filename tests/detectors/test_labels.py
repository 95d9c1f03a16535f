"""LabelDetector: GB 45438 TC260 labels in every carrier, IPTC digital source type,
generator parameters, software names; and no AI finding on genuine camera files."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image, PngImagePlugin

from conftest import DATA, encode, photo, textured_rgb
from refundlens.detectors import DetectorContext
from refundlens.detectors.labels import LabelDetector, ai_source_type

TC260_NS = "http://www.tc260.org.cn/ns/AIGC/1.0/"
IPTC_NS = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
LABEL = {"Label": "1", "ContentProducer": "producer-001", "ProduceID": "produce-42",
         "ReservedCode1": "sig-a", "ContentPropagator": "platform-007",
         "PropagateID": "prop-9", "ReservedCode2": ""}
LABEL_JSON = json.dumps(LABEL)


def run(data: bytes, name: str = "test.jpg"):
    output = LabelDetector().run(photo(data, name), DetectorContext())
    return output.findings, output.info


def codes(findings) -> list[str]:
    return sorted(f.code for f in findings)


def only(findings, code: str):
    hits = [f for f in findings if f.code == code]
    assert len(hits) == 1, [f.code for f in findings]
    return hits[0]


def xmp(inner: str, *, namespaces: str = f'xmlns:TC260="{TC260_NS}"', attrs: str = "") -> bytes:
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" {namespaces} {attrs}>{inner}</rdf:Description>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>').encode("utf-8")


def tc260_element(value: str = LABEL_JSON, prefix: str = "TC260") -> bytes:
    return xmp(f"<{prefix}:AIGC>{_escape(value)}</{prefix}:AIGC>",
               namespaces=f'xmlns:{prefix}="{TC260_NS}"')


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


def png(**chunks: tuple[str, str]) -> bytes:
    """PNG with text chunks: name=(kind, value), kind tEXt | zTXt | iTXt."""
    info = PngImagePlugin.PngInfo()
    for key, (kind, value) in chunks.items():
        if kind == "iTXt":
            info.add_itxt(key, value)
        else:
            info.add_text(key, value, zip=kind == "zTXt")
    return encode(textured_rgb(96, 64), "PNG", pnginfo=info)


def jpeg_exif(*, ifd0: dict | None = None, exif_ifd: dict | None = None, **save) -> bytes:
    exif = Image.Exif()
    for tag, value in (ifd0 or {}).items():
        exif[tag] = value
    if exif_ifd:
        exif[0x8769] = exif_ifd
    return encode(textured_rgb(96, 64), "JPEG", quality=90, exif=exif, **save)


def image(fmt: str, **save) -> bytes:
    return encode(textured_rgb(96, 64), fmt, **save)


USER_COMMENT, IMAGE_DESCRIPTION, XP_COMMENT, SOFTWARE, MAKE = 0x9286, 0x010E, 0x9C9C, 0x0131, \
    0x010F

TC260_CARRIERS = {
    "jpeg-xmp-element": (lambda: image("JPEG", xmp=tc260_element()), "XMP TC260:AIGC (element)"),
    "jpeg-xmp-other-prefix": (lambda: image("JPEG", xmp=tc260_element(prefix="aigcns")),
                              "XMP TC260:AIGC"),
    "jpeg-xmp-attribute": (lambda: image("JPEG", xmp=xmp(
        "", attrs=f'TC260:AIGC="{_escape(LABEL_JSON)}"')), "XMP TC260:AIGC (attribute)"),
    "jpeg-xmp-wrapped": (lambda: image("JPEG", xmp=tc260_element(json.dumps({"AIGC": LABEL}))),
                         "XMP TC260:AIGC"),
    "jpeg-xmp-structure": (lambda: image("JPEG", xmp=xmp(
        '<TC260:AIGC rdf:parseType="Resource">' + "".join(
            f"<TC260:{k}>{v}</TC260:{k}>" for k, v in LABEL.items()) + "</TC260:AIGC>")),
        "XMP TC260:AIGC (structure)"),
    "jpeg-xmp-damaged": (lambda: image("JPEG", xmp=tc260_element()[:-40] + b"<broken"),
                         "damaged XMP"),
    "png-tEXt": (lambda: png(AIGC=("tEXt", LABEL_JSON)), "PNG text chunk \u201cAIGC\u201d"),
    "png-zTXt": (lambda: png(AIGC=("zTXt", LABEL_JSON)), "PNG text chunk \u201cAIGC\u201d"),
    "png-iTXt": (lambda: png(AIGC=("iTXt", json.dumps({"AIGC": LABEL}, ensure_ascii=False))),
                 "PNG text chunk \u201cAIGC\u201d"),
    "png-xmp": (lambda: png(**{"XML:com.adobe.xmp": ("iTXt", tc260_element().decode())}),
                "XMP TC260:AIGC"),
    "exif-usercomment-ascii": (lambda: jpeg_exif(exif_ifd={
        USER_COMMENT: b"ASCII\x00\x00\x00" + LABEL_JSON.encode()}), "EXIF UserComment"),
    "exif-usercomment-unicode-be": (lambda: jpeg_exif(exif_ifd={
        USER_COMMENT: b"UNICODE\x00" + json.dumps({"AIGC": LABEL}).encode("utf-16-be")}),
        "EXIF UserComment"),
    "exif-usercomment-unicode-le": (lambda: jpeg_exif(exif_ifd={
        USER_COMMENT: b"UNICODE\x00" + LABEL_JSON.encode("utf-16-le")}), "EXIF UserComment"),
    "exif-imagedescription": (lambda: jpeg_exif(ifd0={
        IMAGE_DESCRIPTION: ("AI生成 " + json.dumps({"AIGC": LABEL})).encode("utf-8")}),
        "EXIF ImageDescription"),
    "exif-xpcomment": (lambda: jpeg_exif(ifd0={XP_COMMENT: LABEL_JSON.encode("utf-16-le")}),
                       "EXIF XPComment"),
    "webp-xmp": (lambda: image("WEBP", xmp=tc260_element()), "XMP TC260:AIGC (element)"),
    "avif-xmp": (lambda: image("AVIF", xmp=tc260_element()), "XMP TC260:AIGC (element)"),
    "heif-xmp": (lambda: _heif(xmp=tc260_element()), "XMP TC260:AIGC (element)"),
    "tiff-xmp": (lambda: image("TIFF", tiffinfo={700: tc260_element()}), "XMP TC260:AIGC"),
}


def _heif(**save) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    return encode(textured_rgb(96, 64), "HEIF", **save)


@pytest.mark.parametrize("case", sorted(TC260_CARRIERS))
def test_tc260_label_is_read_from_every_carrier(case: str) -> None:
    make, carrier = TC260_CARRIERS[case]
    findings, info = run(make())
    label = only(findings, "AIGC_LABEL_TC260")
    assert label.score == 1.0
    assert carrier in label.details["carrier"]
    assert label.details["label"] == 1
    assert label.details["producer"] == "producer-001"
    assert label.details["produce_id"] == "produce-42"
    assert label.details["reserved_code1"] == "sig-a"
    assert label.details["propagator"] == "platform-007"
    assert label.details["propagate_id"] == "prop-9"
    assert "AI-generated" in label.message_en and "producer-001" in label.message_en
    assert "属于人工智能生成合成内容" in label.message_zh
    assert info["tc260"][0]["fields"]["ProduceID"] == "produce-42"
    assert not [f for f in findings if f.code == "AIGC_LABEL_TC260_MALFORMED"]


@pytest.mark.parametrize("label, score, meaning", [
    ("2", 0.8, "possibly AI-generated"), (3, 0.6, "suspected AI-generated")])
def test_label_2_and_3_score_lower(label, score: float, meaning: str) -> None:
    findings, _ = run(image("JPEG", xmp=tc260_element(json.dumps({**LABEL, "Label": label}))))
    finding = only(findings, "AIGC_LABEL_TC260")
    assert finding.score == score
    assert finding.details["label_meaning_en"] == meaning


def test_same_label_in_two_carriers_is_one_finding() -> None:
    data = jpeg_exif(exif_ifd={USER_COMMENT: b"ASCII\x00\x00\x00" + LABEL_JSON.encode()},
                     xmp=tc260_element())
    finding = only(run(data)[0], "AIGC_LABEL_TC260")
    assert finding.details["also_in"] == ["EXIF UserComment"]


@pytest.mark.parametrize("value, problem", [
    ('{"Label": "1", "ContentProducer": "x"', "invalid JSON"),
    ('{"ContentProducer": "x", "ProduceID": "y"}', "no Label"),
    ('{"Label": "7", "ContentProducer": "x"}', "not 1, 2 or 3"),
    ('["Label", 1]', "expected a JSON object"),
])
def test_malformed_label(value: str, problem: str) -> None:
    findings, info = run(image("JPEG", xmp=tc260_element(value)))
    finding = only(findings, "AIGC_LABEL_TC260_MALFORMED")
    assert problem in finding.details["problem"]
    assert finding.details["carrier"].startswith("XMP TC260:AIGC")
    assert "AIGC_LABEL_TC260" not in codes(findings)
    assert problem in info["tc260"][0]["problem"]


def test_malformed_label_in_png_chunk() -> None:
    finding = only(run(png(AIGC=("tEXt", "Label=1;ContentProducer=x")))[0],
                   "AIGC_LABEL_TC260_MALFORMED")
    assert "invalid JSON" in finding.details["problem"]


def test_iptc_trained_algorithmic_media_with_ai_fields() -> None:
    inner = ("<Iptc4xmpExt:DigitalSourceType>http://cv.iptc.org/newscodes/digitalsourcetype/"
             "trainedAlgorithmicMedia</Iptc4xmpExt:DigitalSourceType>"
             "<Iptc4xmpExt:AISystemUsed>ImageGen Pro</Iptc4xmpExt:AISystemUsed>"
             "<Iptc4xmpExt:AISystemVersionUsed>3.1</Iptc4xmpExt:AISystemVersionUsed>"
             "<Iptc4xmpExt:AIPromptInformation>a cracked vase</Iptc4xmpExt:AIPromptInformation>")
    findings, info = run(image("JPEG", xmp=xmp(inner,
                                                namespaces=f'xmlns:Iptc4xmpExt="{IPTC_NS}"')))
    finding = only(findings, "AIGC_LABEL_IPTC")
    assert finding.score == 1.0
    assert finding.details["source_type"] == "trainedAlgorithmicMedia"
    assert "ImageGen Pro" in finding.message_en and "version 3.1" in finding.message_en
    assert "a cracked vase" in finding.message_zh
    assert info["iptc"]["AISystemUsed"] == "ImageGen Pro"


def test_iptc_bare_value_as_attribute_with_other_prefix() -> None:
    attrs = 'ie:DigitalSourceType="compositeWithTrainedAlgorithmicMedia"'
    data = image("JPEG", xmp=xmp("", namespaces=f'xmlns:ie="{IPTC_NS}"', attrs=attrs))
    finding = only(run(data)[0], "AIGC_LABEL_IPTC")
    assert finding.details["source_type"] == "compositeWithTrainedAlgorithmicMedia"


def test_iptc_digital_capture_is_recorded_not_flagged() -> None:
    uri = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"
    findings, info = run(image("JPEG", xmp=xmp(
        f'<Iptc4xmpExt:DigitalSourceType rdf:resource="{uri}"/>',
        namespaces=f'xmlns:Iptc4xmpExt="{IPTC_NS}"')))
    assert findings == []
    assert info["iptc"]["DigitalSourceType"] == [uri]


def test_ai_source_type_names() -> None:
    assert ai_source_type("http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia") \
        == "algorithmicMedia"
    assert ai_source_type("compositesynthetic") == "compositeSynthetic"
    assert ai_source_type("digitalCapture") is None
    assert ai_source_type(None) is None


A1111 = ("a porcelain vase with a long crack, photo\n"
         "Negative prompt: blurry, lowres\n"
         "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234567, Size: 768x512, "
         "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1")


def test_a1111_parameters_in_png() -> None:
    findings, _ = run(png(parameters=("tEXt", A1111)), "sd.png")
    finding = only(findings, "AIGC_LABEL_GENERATOR")
    assert finding.details["generator"] == "Stable Diffusion WebUI (AUTOMATIC1111)"
    assert finding.details["carrier"] == "PNG text chunk \u201cparameters\u201d"
    assert finding.details["seed"] == "1234567"
    assert finding.details["model"] == "v1-5-pruned-emaonly"
    assert finding.details["prompt"] == "a porcelain vase with a long crack, photo"
    assert "a porcelain vase" in finding.message_en and "提示词" in finding.message_zh


def test_a1111_parameters_in_jpeg_and_webp_user_comment() -> None:
    comment = b"UNICODE\x00" + A1111.encode("utf-16-be")
    for fmt in ("JPEG", "WEBP"):
        exif = Image.Exif()
        exif[0x8769] = {USER_COMMENT: comment}
        finding = only(run(image(fmt, exif=exif))[0], "AIGC_LABEL_GENERATOR")
        assert finding.details["carrier"] == "EXIF UserComment"
        assert finding.details["sampler"] == "DPM++ 2M Karras"


def test_a_recipe_with_steps_is_not_a1111() -> None:
    text = "Steps: 3, then bake at 200 C for 20 minutes"
    assert run(png(Description=("tEXt", text)))[0] == []


COMFY_PROMPT = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "cfg": 8,
                                               "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple",
          "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "torn cardboard box",
                                                     "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {}},
}
COMFY_WORKFLOW = {"last_node_id": 9, "nodes": [
    {"id": 3, "type": "KSampler", "widgets_values": [5, "fixed", 20]},
    {"id": 6, "type": "CLIPTextEncode", "widgets_values": ["torn cardboard box"]}]}


def test_comfyui_prompt_and_workflow_chunks() -> None:
    findings, info = run(png(prompt=("tEXt", json.dumps(COMFY_PROMPT)),
                             workflow=("tEXt", json.dumps(COMFY_WORKFLOW))), "comfy.png")
    finding = only(findings, "AIGC_LABEL_GENERATOR")
    assert finding.details["generator"] == "ComfyUI"
    assert "KSampler" in finding.details["nodes"]
    assert finding.details["prompt"] == "torn cardboard box"
    assert "\u201cprompt\u201d" in finding.details["carrier"]
    assert "\u201cworkflow\u201d" in finding.details["carrier"]
    assert info["generators"] == ["ComfyUI"]


def test_comfyui_webp_exif_make_model() -> None:
    exif = Image.Exif()
    exif[0x0110] = "prompt:" + json.dumps(COMFY_PROMPT)
    finding = only(run(image("WEBP", exif=exif))[0], "AIGC_LABEL_GENERATOR")
    assert finding.details["generator"] == "ComfyUI"
    assert finding.details["carrier"] == "EXIF Model"


def test_novelai_png() -> None:
    comment = {"prompt": "a dented kettle", "steps": 28, "sampler": "k_euler_ancestral",
               "seed": 99, "scale": 5.0, "uc": "lowres"}
    findings, _ = run(png(Title=("tEXt", "AI generated image"),
                          Description=("tEXt", "a dented kettle"),
                          Software=("tEXt", "NovelAI"),
                          Source=("tEXt", "Stable Diffusion XL C1E1DE52"),
                          Comment=("tEXt", json.dumps(comment))), "nai.png")
    finding = only(findings, "AIGC_LABEL_GENERATOR")
    assert finding.details["generator"] == "NovelAI"
    assert finding.details["sampler"] == "k_euler_ancestral"
    assert finding.details["prompt"] == "a dented kettle"
    # Software "NovelAI" is the same fact as the parameters: not a second finding.
    assert "AIGC_LABEL_SOFTWARE" not in codes(findings)


def test_invokeai_metadata() -> None:
    meta = {"positive_prompt": "scratched phone screen", "seed": 1, "steps": 30,
            "model": {"name": "sdxl"}}
    finding = only(run(png(invokeai_metadata=("tEXt", json.dumps(meta))))[0],
                   "AIGC_LABEL_GENERATOR")
    assert finding.details["generator"] == "InvokeAI"
    assert finding.details["prompt"] == "scratched phone screen"


def test_fooocus_scheme() -> None:
    params = {"prompt": "broken mug", "base_model": "juggernautXL", "guidance_scale": 4,
              "version": "Fooocus v2.5.5"}
    finding = only(run(png(parameters=("tEXt", json.dumps(params)),
                           fooocus_scheme=("tEXt", "fooocus")))[0], "AIGC_LABEL_GENERATOR")
    assert finding.details["generator"] == "Fooocus"
    assert finding.details["prompt"] == "broken mug"


@pytest.mark.parametrize("software, code, name", [
    ("Midjourney", "AIGC_LABEL_SOFTWARE", "Midjourney"),
    ("Doubao 豆包 AI", "AIGC_LABEL_SOFTWARE", "Doubao 豆包"),
    ("即梦AI", "AIGC_LABEL_SOFTWARE", "Jimeng 即梦"),
    ("Google Imagen 3", "AIGC_LABEL_SOFTWARE", "Google Imagen"),
    ("Adobe Photoshop 25.0 (Windows)", "METADATA_EDITING_SOFTWARE", "Adobe Photoshop"),
    ("Adobe Photoshop Lightroom Classic 13.1", "METADATA_EDITING_SOFTWARE", "Adobe Lightroom"),
    ("美图秀秀", "METADATA_EDITING_SOFTWARE", "Meitu 美图秀秀"),
    ("醒图", "METADATA_EDITING_SOFTWARE", "Hypic 醒图"),
    ("Snapseed 2.0", "METADATA_EDITING_SOFTWARE", "Snapseed"),
    ("Canva", "METADATA_EDITING_SOFTWARE", "Canva"),
])
def test_software_field(software: str, code: str, name: str) -> None:
    findings, info = run(jpeg_exif(ifd0={SOFTWARE: software.encode("utf-8")}))
    finding = only(findings, code)
    assert finding.details == {**finding.details, "field": "EXIF Software", "software": name}
    assert info["software"][0]["value"] == software
    assert len(findings) == 1


@pytest.mark.parametrize("software", [
    "Ver.1.00", "17.1", "iOS 17.1", "HDR+ 1.0", "Google", "Digital Camera FinePix40i Ver1.39",
    "Canvas Camera 2", "Nikon Transfer 1.1 W", "Microsoft Windows Photo Gallery 6.0",
    "Photos 9.0"])
def test_firmware_and_os_are_not_editors(software: str) -> None:
    findings, info = run(jpeg_exif(ifd0={SOFTWARE: software}))
    assert findings == []
    assert info["software"] == [{"field": "EXIF Software", "value": software, "kind": "other"}]


def test_xmp_creator_tool_and_history() -> None:
    namespaces = ('xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
                  'xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/" '
                  'xmlns:stEvt="http://ns.adobe.com/xap/1.0/sType/ResourceEvent#"')
    history = ('<xmpMM:History><rdf:Seq>'
               '<rdf:li stEvt:action="saved" stEvt:changed="/metadata" '
               'stEvt:softwareAgent="Adobe Photoshop Lightroom 6.2.1 (Macintosh)"/>'
               '<rdf:li stEvt:action="saved" stEvt:changed="/" '
               'stEvt:softwareAgent="GIMP 2.10"/></rdf:Seq></xmpMM:History>')
    findings, _ = run(image("JPEG", xmp=xmp(
        "<xmp:CreatorTool>Ver.1.00</xmp:CreatorTool>" + history, namespaces=namespaces)))
    # Lightroom only rewrote metadata; GIMP saved pixels, in an older event (weaker).
    finding = only(findings, "METADATA_EDITING_SOFTWARE")
    assert finding.details["software"] == "GIMP"
    assert finding.details["field"] == "XMP xmpMM:History softwareAgent"
    assert finding.score == 0.5


def test_ai_name_in_a_description_is_weaker() -> None:
    findings, _ = run(jpeg_exif(ifd0={IMAGE_DESCRIPTION: "Made with Midjourney v6"}))
    finding = only(findings, "AIGC_LABEL_SOFTWARE")
    assert finding.details["field"] == "EXIF ImageDescription"
    assert finding.score == 0.8
    # Ordinary words and names in captions are not generators: "Imagen" (Spanish "image"),
    # "dalle" (Italian "from the"), "Jimeng" / "Wenxin" (given names in pinyin).
    for text in ("Imagen de un jarrón", "Foto dalle vacanze", "Photo by Li Jimeng",
                 "Zhang Wenxin"):
        assert run(jpeg_exif(ifd0={IMAGE_DESCRIPTION: text}))[0] == [], text
    assert run(jpeg_exif(ifd0={0x013B: "Li Jimeng"}))[0] == []  # Artist


def test_plain_generated_photo_has_no_findings() -> None:
    findings, info = run(image("JPEG", quality=90))
    assert findings == []
    assert info == {"fields": {}}


@pytest.mark.parametrize("name", ["fujifilm-finepix40i.jpg", "sanyo-vpcg250.jpg",
                                  "olympus-c960.jpg", "IMG_5195.HEIC"])
def test_genuine_camera_files_are_not_flagged(name: str) -> None:
    findings, info = run((DATA / "labels" / name).read_bytes(), name)
    assert findings == []
    assert info["software"], "the camera's Software tag is recorded for the reviewer"


def test_genuine_editor_metadata() -> None:
    # exif-samples' Canon 40D file, re-saved with GIMP 2.4.5: an editor, not AI.
    findings, _ = run((DATA / "labels" / "Canon_40D_photoshop_import.jpg").read_bytes())
    finding = only(findings, "METADATA_EDITING_SOFTWARE")
    assert finding.details["software"] == "GIMP"
    assert finding.score == 0.6
    assert codes(findings) == ["METADATA_EDITING_SOFTWARE"]


def test_bad_xml_does_not_crash_and_is_reported() -> None:
    findings, info = run(image("JPEG", xmp=b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF>"
                                           b"&undefined;</x:xmpmeta>"))
    assert findings == []
    assert info["xmp_errors"]


def test_entity_expansion_is_refused() -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>&b;</x:xmpmeta>")
    _, info = run(image("JPEG", xmp=bomb))
    assert any("Forbidden" in e for e in info["xmp_errors"])


def test_detector_contract_fields() -> None:
    detector = LabelDetector()
    assert detector.name == "labels"
    assert set(detector.codes) == {"AIGC_LABEL_TC260", "AIGC_LABEL_TC260_MALFORMED",
                                   "AIGC_LABEL_IPTC", "AIGC_LABEL_GENERATOR",
                                   "AIGC_LABEL_SOFTWARE", "METADATA_EDITING_SOFTWARE"}
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    assert run(buffer.getvalue(), "one.png")[0] == []
