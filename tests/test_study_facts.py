"""The study facts (enrollment, dates, design, arms, sites, ids) of real records, against their source fields."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import duckdb
from lxml import etree

from extract.sources import RawRecord, parse_document
from extract.study_facts import iso_date
from schemas import TrialFacts

from conftest import SHARED_DATA, run

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "trials"


def facts_of(path: Path, nct_id: str | None = None, data: bytes | None = None) -> TrialFacts:
    parsed = [p for p in parse_document(data or path.read_bytes(), path.name) if isinstance(p, RawRecord)]
    [record] = [p for p in parsed if nct_id is None or p.trial.nct_id == nct_id]
    return record.trial.trial


def test_v2_facts_are_the_registry_fields_of_the_study():
    path = EXAMPLES / "ctgov-v2" / "NCT06388018.json"
    protocol = json.loads(path.read_text())["protocolSection"]
    facts = facts_of(path)
    status, design = protocol["statusModule"], protocol["designModule"]

    assert facts.enrollment.model_dump() == {"count": 325, "type": "ESTIMATED"} == design["enrollmentInfo"]
    assert facts.start_date.model_dump() == status["startDateStruct"] == {"date": "2025-01-16", "type": "ESTIMATED"}
    assert facts.primary_completion_date.model_dump() == status["primaryCompletionDateStruct"]
    assert facts.completion_date.model_dump() == status["completionDateStruct"]
    assert facts.last_update_posted == status["lastUpdatePostDateStruct"]["date"] == "2024-07-15"
    assert facts.design.model_dump(exclude_defaults=True) == {
        "allocation": "NON_RANDOMIZED", "intervention_model": "PARALLEL", "primary_purpose": "TREATMENT", "masking": "NONE",
    }  # fmt: skip
    assert facts.collaborators == ["National Cancer Institute (NCI)", "Canadian Cancer Trials Group (CCTG)"]
    assert facts.org_study_id == "NRG-GY032"
    assert [(i.id, i.type, i.domain) for i in facts.secondary_ids] == [
        (i["id"], i["type"], i.get("domain")) for i in protocol["identificationModule"]["secondaryIdInfos"]
    ]
    arms = protocol["armsInterventionsModule"]["armGroups"]
    assert [(a.label, a.type, a.description) for a in facts.arm_groups] == [(a["label"], a["type"], a["description"]) for a in arms]
    # an arm's "Radiation: External Beam Radiation Therapy" is the intervention of that name
    names = {i.name for i in facts.interventions}
    assert all(set(a.interventions) <= names for a in facts.arm_groups)
    assert [len(a.interventions) for a in facts.arm_groups] == [len(a["interventionNames"]) for a in arms]
    assert "External Beam Radiation Therapy" in facts.arm_groups[1].interventions
    sites = protocol["contactsLocationsModule"]["locations"]
    assert [s.model_dump() for s in facts.locations] == [
        {"facility": s["facility"], "city": s["city"], "state": s["state"], "country": s["country"], "status": s["status"]}
        for s in sites
    ]


def test_v2_countries_are_those_of_the_sites_each_once_in_order():
    path = EXAMPLES / "ctgov-v2" / "NCT05827016.json"
    sites = json.loads(path.read_text())["protocolSection"]["contactsLocationsModule"]["locations"]
    facts = facts_of(path)
    assert len(facts.locations) == len(sites) > 50
    assert facts.countries == list(dict.fromkeys(s["country"] for s in sites))
    assert len(facts.countries) < len(sites)


def test_v2_observational_design():
    facts = facts_of(SHARED_DATA / "ctgov-v2" / "NCT02663973.json")
    assert facts.design.model_dump(exclude_defaults=True) == {"observational_model": "CASE_ONLY", "time_perspective": "PROSPECTIVE"}
    assert facts.enrollment.model_dump() == {"count": 3000, "type": "ACTUAL"}
    assert facts.collaborators == ["Ministry of Health, Brazil", "Avon Institute"]


def test_classic_xml_facts_are_the_fields_of_the_study():
    path = EXAMPLES / "ctgov-classic-xml" / "NCT03424005.xml"
    study = etree.parse(str(path)).getroot()
    facts = facts_of(path)

    def words(xpath: str) -> list[str]:
        return [node.strip() for node in study.xpath(xpath)]

    assert words("enrollment/text()") == ["310"] and words("enrollment/@type") == ["Anticipated"]
    assert facts.enrollment.model_dump() == {"count": 310, "type": "ESTIMATED"}
    assert words("start_date/text()") == ["March 30, 2018"] and words("start_date/@type") == ["Actual"]
    assert facts.start_date.model_dump() == {"date": "2018-03-30", "type": "ACTUAL"}
    assert words("completion_date/text()") == ["August 17, 2021"]
    assert facts.completion_date.model_dump() == {"date": "2021-08-17", "type": "ESTIMATED"}
    assert facts.primary_completion_date.model_dump() == {"date": "2021-08-17", "type": "ESTIMATED"}
    assert facts.last_update_posted == iso_date(words("last_update_posted/text()")[0]) == "2019-04-16"
    assert words("study_design_info/masking/text()") == ["None (Open Label)"]
    assert facts.design.model_dump() == {
        "allocation": "RANDOMIZED", "intervention_model": "PARALLEL", "primary_purpose": "TREATMENT", "masking": "NONE",
        "who_masked": [], "observational_model": None, "time_perspective": None,
    }  # fmt: skip
    assert facts.collaborators == words("sponsors/collaborator/agency/text()") == ["Seattle Genetics, Inc."]
    assert facts.org_study_id == "CO40115"
    assert [i.id for i in facts.secondary_ids] == words("id_info/secondary_id/text()") == ["2017-002038-21"]
    # classic arms do not list their interventions: each intervention lists its arms
    arms = study.xpath("arm_group")
    assert [a.label for a in facts.arm_groups] == [arm.findtext("arm_group_label").strip() for arm in arms]
    assert [a.type for a in facts.arm_groups][:2] == ["ACTIVE_COMPARATOR", "EXPERIMENTAL"]
    for arm in facts.arm_groups:
        expected = [i.findtext("intervention_name").strip() for i in study.xpath("intervention")
                    if arm.label in words_of(i, "arm_group_label")]  # fmt: skip
        assert arm.interventions == expected and expected
    assert facts.arm_groups[1].interventions == ["Atezolizumab", "Ipatasertib"]
    sites = study.xpath("location")
    assert [s.model_dump() for s in facts.locations] == [
        {"facility": site.findtext("facility/name").strip(), "city": site.findtext("facility/address/city").strip(),
         "state": (site.findtext("facility/address/state") or "").strip() or None,
         "country": site.findtext("facility/address/country").strip(),
         "status": site.findtext("status").strip().upper().replace(" ", "_")}
        for site in sites
    ]  # fmt: skip
    assert len(facts.locations) == 22
    assert facts.countries == words("location_countries/country/text()")


def words_of(element, tag: str) -> list[str]:
    return [child.text.strip() for child in element.findall(tag)]


def test_classic_design_written_as_one_line_before_2017():
    path = SHARED_DATA / "ctgov-classic-xml" / "NCT02028676_modified.xml"
    assert "<study_design>Allocation: Randomized, Endpoint Classification" in path.read_text()
    design = facts_of(path).design
    assert design.model_dump(exclude_defaults=True) == {
        "allocation": "RANDOMIZED", "intervention_model": "FACTORIAL", "primary_purpose": "TREATMENT", "masking": "NONE",
    }  # fmt: skip


def test_classic_masking_names_its_roles_and_dates_keep_their_precision():
    facts = facts_of(SHARED_DATA / "ctgov-classic-xml" / "NCT02028676.xml")
    assert facts.start_date.model_dump() == {"date": "2007-03", "type": None}  # <start_date>March 2007</start_date>
    assert facts.enrollment.count == 1206
    quadruple = facts_of(SHARED_DATA / "ctgov-classic-xml" / "NCT02679963.xml").design
    assert (quadruple.masking, quadruple.who_masked) == ("QUADRUPLE", ["PARTICIPANT", "CARE_PROVIDER", "INVESTIGATOR", "OUTCOMES_ASSESSOR"])


def test_flat_export_facts_are_its_columns():
    path = EXAMPLES / "ctgov-2026-sample.jsonl"
    row = next(r for r in map(json.loads, path.read_text().splitlines()) if r["nct_id"] == "NCT03093116")
    facts = facts_of(path, "NCT03093116")
    assert facts.enrollment.model_dump() == {"count": row["enrollment_count"], "type": None}
    assert facts.start_date.model_dump() == {"date": row["start_date"], "type": None} == {"date": "2017-03-07", "type": None}
    assert facts.completion_date.date == row["completion_date"]
    assert facts.countries == row["locations"] and len(facts.countries) == 19  # the export's locations are countries
    assert facts.collaborators == row["collaborators"]
    assert facts.locations == [] and facts.design is None and facts.arm_groups == []


def test_a_plain_row_states_no_study_facts():
    facts = facts_of(Path(__file__).resolve().parents[1] / "evals" / "records" / "NCT06450314.jsonl")
    assert facts.model_dump(exclude_defaults=True).keys() == {"title", "conditions"}


def test_study_facts_of_the_wrong_shape_are_left_out_and_the_record_kept():
    path = EXAMPLES / "ctgov-v2" / "NCT06388018.json"
    study = json.loads(path.read_text())
    protocol = copy.deepcopy(study)["protocolSection"]
    protocol["designModule"]["enrollmentInfo"] = {"count": -5, "type": "SOON"}
    protocol["designModule"]["designInfo"] = ["RANDOMIZED"]
    protocol["statusModule"]["startDateStruct"] = {"date": "next spring"}
    protocol["contactsLocationsModule"]["locations"] = "everywhere"
    protocol["armsInterventionsModule"]["armGroups"] = [{"label": None}, "Arm B", {"label": "Arm C", "interventionNames": [3]}]
    protocol["sponsorCollaboratorsModule"]["collaborators"] = [{"name": {"x": 1}}, {"name": "NCI"}]
    facts = facts_of(path, data=json.dumps({"protocolSection": protocol}).encode())
    assert facts.enrollment is None and facts.design is None and facts.start_date is None
    assert facts.locations == [] and facts.countries == []
    assert [(a.label, a.interventions) for a in facts.arm_groups] == [("Arm C", [])]
    assert facts.collaborators == ["NCI"]
    assert facts.completion_date.date == "2027-01-16"  # the rest is read as usual


def test_study_facts_reach_the_record_and_its_parquet_export(tmp_path):
    root = tmp_path / "ws"
    run("--workspace", str(root), "import", str(EXAMPLES / "ctgov-v2" / "NCT06388018.json"),
        str(EXAMPLES / "ctgov-classic-xml" / "NCT03424005.xml"))  # fmt: skip
    run("--workspace", str(root), "extract", "--all", "--backend", "rules")
    shown = json.loads(run("--workspace", str(root), "show", "NCT03424005", "--part", "trial").stdout)
    assert shown["enrollment"] == {"count": 310, "type": "ESTIMATED"} and len(shown["locations"]) == 22
    out = tmp_path / "records.parquet"
    run("--workspace", str(root), "export", "--format", "parquet", "--out", str(out))
    rows = duckdb.sql(
        f"SELECT nct_id, trial.enrollment.count, trial.start_date.date::VARCHAR, len(trial.locations), trial.locations[1].country, "
        f"trial.arm_groups[2].interventions, trial.design.masking FROM '{out}' ORDER BY nct_id"
    ).fetchall()
    assert rows == [
        ("NCT03424005", 310, "2018-03-30", 22, "United States", ["Atezolizumab", "Ipatasertib"], "NONE"),
        ("NCT06388018", 325, "2025-01-16", 1, "United States", facts_of(EXAMPLES / "ctgov-v2" / "NCT06388018.json").arm_groups[1].interventions, "NONE"),
    ]
