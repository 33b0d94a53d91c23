"""QTI packages: a hand-written 3.0 package and a 2.1 one import; export round-trips; malformed
and hostile packages are refused with a clear code."""

import io
import zipfile
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from test_assembly.model import ItemDefinition, TestDefinition
from test_assembly.qti import PackageError, export_package, import_package

NS3 = 'xmlns="http://www.imsglobal.org/xsd/imsqtiasi_v3p0"'
NS21 = 'xmlns="http://www.imsglobal.org/xsd/imsqti_v2p1"'
TEMPLATE3 = "https://purl.imsglobal.org/spec/qti/v3p0/rptemplates/"


def zipped(files: dict[str, str | bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return out.getvalue()


def manifest(resources: list[tuple[str, str, str]]) -> str:
    rows = "".join(
        f'<resource identifier="{ident}" type="{kind}" href="{href}"><file href="{href}"/>'
        "</resource>"
        for ident, kind, href in resources
    )
    return (
        '<manifest xmlns="http://www.imsglobal.org/xsd/qti/qtiv3p0/imscp_v1p1" identifier="m">'
        f"<organizations/><resources>{rows}</resources></manifest>"
    )


CAPITAL = f"""<?xml version="1.0" encoding="UTF-8"?>
<qti-assessment-item {NS3} identifier="capital" title="Capital" adaptive="false"
    time-dependent="false">
  <qti-response-declaration identifier="RESPONSE" cardinality="single" base-type="identifier">
    <qti-correct-response><qti-value>paris</qti-value></qti-correct-response>
  </qti-response-declaration>
  <qti-outcome-declaration identifier="SCORE" cardinality="single" base-type="float"/>
  <qti-item-body>
    <p>Geography.</p>
    <qti-choice-interaction response-identifier="RESPONSE" max-choices="1" shuffle="true">
      <qti-prompt>Which city is the capital of France?</qti-prompt>
      <qti-simple-choice identifier="paris">Paris</qti-simple-choice>
      <qti-simple-choice identifier="lyon">Lyon</qti-simple-choice>
      <qti-simple-choice identifier="nice">  Nice
      </qti-simple-choice>
    </qti-choice-interaction>
  </qti-item-body>
  <qti-response-processing template="{TEMPLATE3}match_correct.xml"/>
</qti-assessment-item>"""

RIVER = f"""<qti-assessment-item {NS3} identifier="river" title="River" time-dependent="false">
  <qti-response-declaration identifier="RESPONSE" cardinality="single" base-type="string">
    <qti-correct-response><qti-value>Seine</qti-value></qti-correct-response>
    <qti-mapping default-value="0">
      <qti-map-entry map-key="Seine" mapped-value="2" case-sensitive="false"/>
      <qti-map-entry map-key="la Seine" mapped-value="1" case-sensitive="false"/>
    </qti-mapping>
  </qti-response-declaration>
  <qti-outcome-declaration identifier="SCORE" cardinality="single" base-type="float"/>
  <qti-item-body>
    <p>The river in Paris is the <qti-text-entry-interaction response-identifier="RESPONSE"
       expected-length="10"/>.</p>
  </qti-item-body>
  <qti-response-processing template="{TEMPLATE3}map_response.xml"/>
</qti-assessment-item>"""

PAIRS = f"""<qti-assessment-item {NS3} identifier="pairs" title="Pairs" time-dependent="false">
  <qti-response-declaration identifier="RESPONSE" cardinality="multiple" base-type="directedPair">
    <qti-correct-response><qti-value>fr paris</qti-value><qti-value>it rome</qti-value>
    </qti-correct-response>
  </qti-response-declaration>
  <qti-outcome-declaration identifier="MAXSCORE" cardinality="single" base-type="float">
    <qti-default-value><qti-value>4</qti-value></qti-default-value>
  </qti-outcome-declaration>
  <qti-item-body>
    <qti-match-interaction response-identifier="RESPONSE" max-associations="2">
      <qti-prompt>Match each country to its capital.</qti-prompt>
      <qti-simple-match-set>
        <qti-simple-associable-choice identifier="fr" match-max="1">
          France</qti-simple-associable-choice>
        <qti-simple-associable-choice identifier="it" match-max="1">
          Italy</qti-simple-associable-choice>
      </qti-simple-match-set>
      <qti-simple-match-set>
        <qti-simple-associable-choice identifier="paris" match-max="1">
          Paris</qti-simple-associable-choice>
        <qti-simple-associable-choice identifier="rome" match-max="1">
          Rome</qti-simple-associable-choice>
      </qti-simple-match-set>
    </qti-match-interaction>
  </qti-item-body>
  <qti-response-processing template="{TEMPLATE3}match_correct.xml"/>
</qti-assessment-item>"""

DRAWING = f"""<qti-assessment-item {NS3} identifier="drawing" title="Draw" time-dependent="false">
  <qti-response-declaration identifier="RESPONSE" cardinality="single" base-type="file"/>
  <qti-item-body><qti-drawing-interaction response-identifier="RESPONSE"/></qti-item-body>
</qti-assessment-item>"""

TEST = f"""<qti-assessment-test {NS3} identifier="geo" title="Geography">
  <qti-time-limits max-time="1200"/>
  <qti-test-part identifier="p1" navigation-mode="linear" submission-mode="individual">
    <qti-assessment-section identifier="s1" title="Warm-up" visible="true">
      <qti-assessment-item-ref identifier="r1" href="../items/capital.xml"/>
      <qti-assessment-item-ref identifier="r2" href="../items/river.xml"/>
    </qti-assessment-section>
    <qti-assessment-section identifier="s2" title="Main" visible="true">
      <qti-selection select="1"/>
      <qti-ordering shuffle="true"/>
      <qti-time-limits max-time="600"/>
      <qti-assessment-item-ref identifier="r3" href="../items/pairs.xml"/>
      <qti-assessment-item-ref identifier="r4" href="../items/drawing.xml"/>
    </qti-assessment-section>
  </qti-test-part>
</qti-assessment-test>"""


def package_v3(**replace: str | bytes) -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = {
        "imsmanifest.xml": manifest(
            [
                ("t", "imsqti_test_xmlv3p0", "tests/geo.xml"),
                ("i1", "imsqti_item_xmlv3p0", "items/capital.xml"),
                ("i2", "imsqti_item_xmlv3p0", "items/river.xml"),
                ("i3", "imsqti_item_xmlv3p0", "items/pairs.xml"),
                ("i4", "imsqti_item_xmlv3p0", "items/drawing.xml"),
            ]
        ),
        "tests/geo.xml": TEST,
        "items/capital.xml": CAPITAL,
        "items/river.xml": RIVER,
        "items/pairs.xml": PAIRS,
        "items/drawing.xml": DRAWING,
    }
    return files | replace


def test_a_qti3_package_imports_items_and_test_and_reports_what_it_could_not() -> None:
    result = import_package(zipped(package_v3()))
    assert result.version == "3.0"
    items = {i.identifier: i for i in result.items}
    assert set(items) == {"capital", "river", "pairs"}
    capital = items["capital"]
    assert capital.prompt == "Geography.\n\nWhich city is the capital of France?"
    assert [c.text for c in capital.choices or []] == ["Paris", "Lyon", "Nice"]
    assert capital.correct == ["paris"]
    assert capital.shuffle
    river = items["river"]
    assert river.type == "text_entry"
    assert river.prompt == "The river in Paris is the {}."
    assert river.method == "map_response"
    assert river.mapping is not None
    assert river.mapping.entries == {"Seine": 2.0, "la Seine": 1.0}
    assert river.expected_length == 10
    pairs = items["pairs"]
    assert pairs.correct == [["fr", "paris"], ["it", "rome"]]
    assert pairs.points == 4.0
    assert [(p.file, p.identifier) for p in result.problems] == [
        ("items/drawing.xml", "drawing"),
        ("tests/geo.xml", "r4"),
    ]
    assert "qti-drawing-interaction is not supported" in result.problems[0].reason
    test = result.test
    assert test is not None
    assert (test.title, test.time_limit_seconds, test.navigation_mode) == (
        "Geography",
        1200,
        "linear",
    )
    assert test.policies.submission_mode == "individual"
    s1, s2 = test.blueprint.sections
    assert s1.items == ["capital", "river"]
    assert s2.items == ["pairs"]
    assert s2.selection.mode == "random"
    assert s2.selection.count == 1
    assert s2.ordering.shuffle_items
    assert s2.time_limit_seconds == 600


def test_all_or_nothing_refuses_a_package_with_any_problem() -> None:
    with pytest.raises(PackageError) as refused:
        import_package(zipped(package_v3()), all_or_nothing=True)
    assert refused.value.code == "import_incomplete"
    assert len(refused.value.details["problems"]) == 2


ITEM21 = """<assessmentItem xmlns="http://www.imsglobal.org/xsd/imsqti_v2p1" identifier="order21"
    title="Order" adaptive="false" timeDependent="false">
  <responseDeclaration identifier="RESPONSE" cardinality="ordered" baseType="identifier">
    <correctResponse><value>b</value><value>a</value><value>c</value></correctResponse>
  </responseDeclaration>
  <outcomeDeclaration identifier="SCORE" cardinality="single" baseType="float"/>
  <itemBody>
    <orderInteraction responseIdentifier="RESPONSE" shuffle="false">
      <prompt>Put them in order.</prompt>
      <simpleChoice identifier="a">A</simpleChoice>
      <simpleChoice identifier="b">B</simpleChoice>
      <simpleChoice identifier="c">C</simpleChoice>
    </orderInteraction>
  </itemBody>
  <responseProcessing
      template="http://www.imsglobal.org/question/qti_v2p1/rptemplates/match_correct"/>
</assessmentItem>"""

GAP21 = """<assessmentItem xmlns="http://www.imsglobal.org/xsd/imsqti_v2p1" identifier="gap21"
    title="Gaps" adaptive="false" timeDependent="false">
  <responseDeclaration identifier="RESPONSE" cardinality="multiple" baseType="directedPair">
    <correctResponse><value>cat G1</value></correctResponse>
    <mapping defaultValue="0" lowerBound="0"><mapEntry mapKey="cat G1" mappedValue="1"/>
    </mapping>
  </responseDeclaration>
  <itemBody>
    <gapMatchInteraction responseIdentifier="RESPONSE" shuffle="true">
      <gapText identifier="cat" matchMax="1">cat</gapText>
      <gapText identifier="dog" matchMax="1">dog</gapText>
      <p>The <gap identifier="G1"/> purrs.</p>
    </gapMatchInteraction>
  </itemBody>
  <responseProcessing
      template="http://www.imsglobal.org/question/qti_v2p2/rptemplates/map_response"/>
</assessmentItem>"""


def test_qti21_items_are_upgraded_on_import() -> None:
    files = {
        "imsmanifest.xml": manifest(
            [("a", "imsqti_item_xmlv2p1", "order.xml"), ("b", "imsqti_item_xmlv2p1", "gap.xml")]
        ),
        "order.xml": ITEM21,
        "gap.xml": GAP21,
    }
    result = import_package(zipped(files))
    assert result.version == "2.1"
    assert result.problems == []
    assert result.test is None
    order, gap = result.items
    assert (order.type, order.correct, order.prompt) == (
        "order",
        ["b", "a", "c"],
        "Put them in order.",
    )
    assert (gap.type, gap.gaps, gap.prompt) == ("gap_match", ["G1"], "The {G1} purrs.")
    assert gap.method == "map_response"
    assert gap.mapping is not None
    assert gap.mapping.lower_bound == 0.0


WRAPPED22 = """<assessmentItem xmlns="http://www.imsglobal.org/xsd/imsqti_v2p2" identifier="w22"
    title="Wrapped" adaptive="false" timeDependent="false">
  <responseDeclaration identifier="RESPONSE" cardinality="single" baseType="identifier">
    <correctResponse><value>b</value></correctResponse>
  </responseDeclaration>
  <itemBody>
    <div class="grid-row"><div class="col-12">
      <choiceInteraction responseIdentifier="RESPONSE" maxChoices="1">
        <prompt>Which one?</prompt>
        <simpleChoice identifier="a">A</simpleChoice>
        <simpleChoice identifier="b">B</simpleChoice>
      </choiceInteraction>
    </div></div>
  </itemBody>
  <responseProcessing
      template="http://www.imsglobal.org/question/qti_v2p2/rptemplates/match_correct"/>
</assessmentItem>"""


def test_an_interaction_inside_layout_divs_keeps_its_prompt() -> None:
    """Authoring tools wrap interactions in grid divs; the prompt must survive the wrapping."""
    files = {
        "imsmanifest.xml": manifest([("w", "imsqti_item_xmlv2p2", "w.xml")]),
        "w.xml": WRAPPED22,
    }
    (item,) = import_package(zipped(files)).items
    assert item.prompt == "Which one?"
    assert item.correct == ["b"]


EXAMPLE_ITEMS: list[dict[str, Any]] = [
    {"identifier": "c1", "type": "choice", "prompt": "Pick two.\n\nCarefully.",
     "choices": [{"identifier": x, "text": f"Choice {x}"} for x in "ABCD"],
     "correct": ["A", "C"], "points": 2, "penalty": 0.5, "shuffle": True,
     "tags": ["topic:geo", "difficulty:easy"], "irt": {"a": 1.3, "b": -0.4, "c": 0.2}},
    {"identifier": "t1", "type": "text_entry", "prompt": "Capital of Italy: {} (one word)",
     "correct": ["Rome", "Roma"], "points": 3},
    {"identifier": "n1", "type": "numeric", "prompt": "Pi to two places?", "correct": 3.14,
     "tolerance": 0.005},
    {"identifier": "n2", "type": "numeric", "prompt": "Six times seven?", "correct": 42},
    {"identifier": "e1", "type": "extended_text", "prompt": "Discuss.", "points": 10,
     "expected_length": 400, "max_length": 5000},
    {"identifier": "i1", "type": "inline_choice", "prompt": "Water is {} at 120 degrees.",
     "choices": [{"identifier": "gas", "text": "a gas"}, {"identifier": "ice", "text": "ice"}],
     "correct": "gas"},
    {"identifier": "o1", "type": "order", "prompt": "Smallest first.",
     "choices": [{"identifier": x, "text": x} for x in "XYZ"], "correct": ["Z", "X", "Y"]},
    {"identifier": "m1", "type": "match", "prompt": "Match.",
     "sources": [{"identifier": "s1", "text": "one"}, {"identifier": "s2", "text": "two"}],
     "targets": [{"identifier": "t1", "text": "1", "match_max": 2},
                 {"identifier": "t2", "text": "2"}],
     "correct": [["s1", "t1"], ["s2", "t2"]], "method": "map_response",
     "mapping": {"entries": {"s1 t1": 1, "s2 t2": 1, "s2 t1": -0.5}, "lower_bound": -1,
                 "upper_bound": 2}, "max_associations": 2},
    {"identifier": "g1", "type": "gap_match", "prompt": "The {G1} chased the {G2}.",
     "gap_texts": [{"identifier": "dog", "text": "dog"}, {"identifier": "cat", "text": "cat",
                    "match_max": 0}],
     "gaps": ["G1", "G2"], "correct": [["dog", "G1"], ["cat", "G2"]]},
]  # fmt: skip


def example_test(**changes: Any) -> TestDefinition:
    spec = {
        "identifier": "everything",
        "title": "Every interaction",
        "time_limit_seconds": 1800,
        "navigation_mode": "linear",
        "attempt_limit": 3,
        "blueprint": {
            "shuffle_sections": True,
            "sections": [
                {"identifier": "a", "title": "Fixed", "items": ["c1", "t1", "n1", "n2", "e1"],
                 "time_limit_seconds": 600, "fixed_position": True},
                {"identifier": "b", "title": "Random", "items": ["i1", "o1", "m1", "g1"],
                 "selection": {"mode": "random", "count": 2},
                 "ordering": {"shuffle_items": True, "shuffle_choices": True}},
                {"identifier": "c", "title": "Pool",
                 "selection": {"mode": "pool", "count": 1, "tags": ["topic:geo"]}},
            ],
        },
        "policies": {"feedback": "after_submission", "review": "full", "negative_marking": True,
                     "pass_mark": 0.6, "attempt_scoring": "average", "deadline": "grace",
                     "grace_seconds": 30, "submission_mode": "individual"},
        "items": EXAMPLE_ITEMS,
    }  # fmt: skip
    return TestDefinition.model_validate(spec | changes)


def test_export_then_import_gives_back_the_same_test() -> None:
    test = example_test()
    result = import_package(export_package(test))
    assert result.problems == []
    assert result.test == test
    assert export_package(test) == export_package(test)  # byte-for-byte stable


def test_an_exported_package_is_plain_qti3_to_other_tools() -> None:
    data = export_package(example_test())
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        item = archive.read("items/c1.xml").decode()
        test = archive.read("tests/everything.xml").decode()
    assert names[0] == "imsmanifest.xml"
    assert "qti-choice-interaction" in item
    assert (
        'template="https://purl.imsglobal.org/spec/qti/v3p0/rptemplates/match_correct.xml"' in item
    )
    assert 'navigation-mode="linear"' in test
    assert 'submission-mode="individual"' in test
    assert '<qti-selection select="2">' in test


words = st.text(alphabet="abcdefghij KLM<&", min_size=1, max_size=30).map(
    lambda t: " ".join(t.split())
)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    prompt=st.lists(words.filter(bool), min_size=1, max_size=3).map("\n\n".join),
    texts=st.lists(words.filter(bool), min_size=2, max_size=5),
    points=st.floats(min_value=0, max_value=100, allow_nan=False).map(lambda f: round(f, 2)),
    correct=st.integers(min_value=0, max_value=10),
    kind=st.sampled_from(["choice", "order", "inline_choice"]),
)
def test_round_trip_of_generated_items(
    prompt: str, texts: list[str], points: float, correct: int, kind: str
) -> None:
    choices = [{"identifier": f"c{n}", "text": t} for n, t in enumerate(texts)]
    answer: Any = {
        "choice": [f"c{correct % len(texts)}"],
        "order": [c["identifier"] for c in reversed(choices)],
        "inline_choice": f"c{correct % len(texts)}",
    }[kind]
    if kind == "inline_choice":
        prompt = prompt + " {} end"
    item = ItemDefinition.model_validate(
        {"identifier": "gen", "type": kind, "prompt": prompt, "choices": choices,
         "correct": answer, "points": points}
    )  # fmt: skip
    test = example_test(
        items=[item.model_dump()],
        blueprint={"sections": [{"identifier": "s", "items": ["gen"]}]},
    )
    assert import_package(export_package(test)).test == test


# ---- hostile and broken packages -----------------------------------------------------------


BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<manifest xmlns="http://www.imsglobal.org/xsd/qti/qtiv3p0/imscp_v1p1">&lol3;</manifest>"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE item [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<qti-assessment-item xmlns="http://www.imsglobal.org/xsd/imsqtiasi_v3p0" identifier="x"
  time-dependent="false"><qti-item-body><p>&secret;</p></qti-item-body></qti-assessment-item>"""


def zip_bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("imsmanifest.xml", manifest([]))
        archive.writestr("huge.xml", b"\0" * (4 * 1024 * 1024))
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"this is not a zip", "bad_zip"),
        (zipped({"readme.txt": "hello"}), "missing_manifest"),
        (zipped({"imsmanifest.xml": "<manifest><unclosed></manifest>"}), "broken_xml"),
        (zipped({"imsmanifest.xml": BOMB}), "forbidden_dtd"),
        (zipped(package_v3(**{"items/capital.xml": XXE})), "forbidden_dtd"),
        (zipped({"imsmanifest.xml": manifest([("t", "imsqti_item_xmlv3p0", "../../etc/passwd")])}),
         "unsafe_path"),
        (zipped({"imsmanifest.xml": manifest([("t", "imsqti_item_xmlv3p0", "/etc/passwd")])}),
         "unsafe_path"),
        (zipped(package_v3(**{"tests/geo.xml": TEST.replace("../items/pairs.xml",
                                                            "../../../pairs.xml")})),
         "unsafe_path"),
        (zipped({"imsmanifest.xml": manifest([]), "../evil.xml": "<x/>"}), "unsafe_path"),
        (zipped({"imsmanifest.xml": manifest([("t", "imsqti_item_xmlv3p0", "gone.xml")])}),
         "missing_file"),
        (zip_bomb(), "package_too_large"),
        (zipped({"imsmanifest.xml": manifest([])}), "empty_package"),
    ],
)  # fmt: skip
def test_malformed_and_hostile_packages_are_refused(data: bytes, code: str) -> None:
    with pytest.raises(PackageError) as refused:
        import_package(data)
    assert refused.value.code == code
    assert refused.value.message
