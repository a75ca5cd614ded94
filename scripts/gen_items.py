#!/usr/bin/env python3
"""Generate the model layer's item table and per-file dataclasses.

One-off tooling, kept for provenance. ``src/healthcard_apdu/model/data/items.json`` and
``src/healthcard_apdu/model/files.py`` are the committed results; tests check them against the
reference, not against this script.

    python scripts/gen_items.py items      # -> items.json, from the tables below and
                                           # docs/reference/healthcard-layout.md §2.3/§2.4
    python scripts/gen_items.py classes    # items.json -> files.py

Items 1-63 and 385 (photo) carry the national pinyin codes. Items 64-384 come from the offset
tables of ``docs/reference/healthcard-layout.md``; their pinyin codes are OURS: initials of
the Chinese name plus the group index, with a ZY/MZ prefix where the inpatient and outpatient
files would otherwise share a code.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference" / "healthcard-layout.md"
ITEMS_JSON = ROOT / "src" / "healthcard_apdu" / "model" / "data" / "items.json"
FILES_PY = ROOT / "src" / "healthcard_apdu" / "model" / "files.py"

# no code 中文 english fmt+len file+location kind code-table
# location: rN = TLV record N (tag = item number); @N = byte offset inside the record/file
NATIONAL = """
1 KLB 卡的类别 card_category ans1 DDF1/EF05r1 code card_category
2 GFBB 规范版本 spec_version ans4 DDF1/EF05r2 text -
3 FKJGMC 发卡机构名称 issuer_name ans30 DDF1/EF05r3 text -
4 FKJGDM 发卡机构代码 issuer_code cn11 DDF1/EF05r4 number -
5 FKJGZS 发卡机构证书 issuer_certificate b180 DDF1/EF05r5 binary -
6 FKSJ 发卡时间 issue_date cn4 DDF1/EF05r6 date -
8 KH 卡号 card_number ans18 DDF1/EF05r7 text -
9 AQM 安全码 security_code ans3 DDF1/EF05r8 numeric_text -
10 XPXLH 芯片序列号 chip_serial_number ans10 DDF1/EF05r9 text -
57 YYCSDM 应用城市代码 application_city_code cn3 DDF1/EF05r10 region -
11 XM 姓名 name ans30 DDF1/EF06r1 text -
12 XB 性别 sex b1 DDF1/EF06r2 code sex
13 MZ 民族代码 ethnicity cn1 DDF1/EF06r3 code ethnicity
14 CSRQ 出生日期 birth_date cn4 DDF1/EF06r4 date -
15 SFZH 居民身份证号码 resident_id_number ans18 DDF1/EF06r5 id_number -
385 ZHAOPIAN 照片 photo_jpeg b3074 DDF1/EF07@0 photo -
7 KYXQ 卡有效期 card_expiry_date cn4 DDF1/EF08r1 date -
16 BRDH1 本人电话1 phone_1 ans20 DDF1/EF08r2 phone -
17 BRDH2 本人电话2 phone_2 ans20 DDF1/EF08r3 phone -
18 YLFYZFFS1 医疗费用支付方式1 payment_method_1 cn1 DDF1/EF08r4 code payment_method
19 YLFYZFFS2 医疗费用支付方式2 payment_method_2 cn1 DDF1/EF08r5 code payment_method
20 YLFYZFFS3 医疗费用支付方式3 payment_method_3 cn1 DDF1/EF08r6 code payment_method
21 DZLB1 地址类别1 address_type_1 cn1 DF01/EF05r1 code address_type
22 DZ1 地址1 address_1 ans100 DF01/EF05r2 text -
23 DZLB2 地址类别2 address_type_2 cn1 DF01/EF05r3 code address_type
24 DZ2 地址2 address_2 ans100 DF01/EF05r4 text -
25 LXRXM1 联系人姓名1 contact_name_1 ans30 DF01/EF06r1 text -
26 LXRGX1 联系人关系1 contact_relationship_1 cn1 DF01/EF06r2 code relationship
27 LXRDH1 联系人电话1 contact_phone_1 ans20 DF01/EF06r3 phone -
28 LXRXM2 联系人姓名2 contact_name_2 ans30 DF01/EF06r4 text -
29 LXRGX2 联系人关系2 contact_relationship_2 cn1 DF01/EF06r5 code relationship
30 LXRDH2 联系人电话2 contact_phone_2 ans20 DF01/EF06r6 phone -
31 LXRXM3 联系人姓名3 contact_name_3 ans30 DF01/EF06r7 text -
32 LXRGX3 联系人关系3 contact_relationship_3 cn1 DF01/EF06r8 code relationship
33 LXRDH3 联系人电话3 contact_phone_3 ans20 DF01/EF06r9 phone -
34 WHCD 文化程度代码 education_level cn1 DF01/EF07r1 code education
35 HYZK 婚姻状况代码 marital_status cn1 DF01/EF07r2 code marital_status
36 ZY 职业代码 occupation ans3 DF01/EF07r3 text -
37 ZJLB 证件类别 id_document_type cn1 DF01/EF08r1 code id_document_type
38 ZJHM 证件号码 id_document_number ans18 DF01/EF08r2 text -
39 JKDAH 健康档案编号 health_record_number ans17 DF01/EF08r3 text -
40 XNHZH 新农合证(卡)号 ncms_card_number ans18 DF01/EF08r4 text -
41 ABOXX ABO血型代码 abo_blood_group b1 DF02/EF05r1 code abo_blood_group
42 RHXX RH血型代码 rh_blood_group cn1 DF02/EF05r2 code rh_blood_group
43 XCBZ 哮喘标志 asthma_flag b1 DF02/EF05r3 flag -
44 XZBBZ 心脏病标志 heart_disease_flag b1 DF02/EF05r4 flag -
45 XNXGBBZ 心脑血管病标志 cardio_cerebrovascular_disease_flag b1 DF02/EF05r5 flag -
46 DXBBZ 癫痫病标志 epilepsy_flag b1 DF02/EF05r6 flag -
47 NXWLBZ 凝血紊乱标志 coagulation_disorder_flag b1 DF02/EF05r7 flag -
48 TNBBZ 糖尿病标志 diabetes_flag b1 DF02/EF05r8 flag -
49 QGYBZ 青光眼标志 glaucoma_flag b1 DF02/EF05r9 flag -
50 TXBZ 透析标志 dialysis_flag b1 DF02/EF05r10 flag -
51 QGYZBZ 器官移植标志 organ_transplant_flag b1 DF02/EF05r11 flag -
52 QGQSBZ 器官缺失标志 missing_organ_flag b1 DF02/EF05r12 flag -
53 KZXYZBZ 可装卸的义肢标志 removable_prosthesis_flag b1 DF02/EF05r13 flag -
54 XZQBQBZ 心脏起搏器标志 pacemaker_flag b1 DF02/EF05r14 flag -
55 QTYXJSMC 其他医学警示名称 other_medical_alert ans40 DF02/EF05r15 text -
56 JSBBZ 精神病标志 psychiatric_illness_flag b1 DF02/EF06r1 flag -
58 GMWZMC 过敏物质名称 allergen_name ans20 DF02/EF07@0 text -
59 GMFY 过敏反应 allergic_reaction ans100 DF02/EF07@20 text -
60 MYJZMC 免疫接种名称 vaccine_name ans20 DF02/EF08@0 text -
61 MYJZSJ 免疫接种时间 vaccination_date cn4 DF02/EF08@20 date -
62 ZYJLBS 住院记录有效标志 inpatient_record_valid b1 DF03/EF05@0 index_flag -
63 MZJLBS 门诊记录有效标志 outpatient_record_valid b1 DF03/EF06@0 index_flag -
"""

# Chinese base name (group index stripped) -> our code, English name, kind, code table
DERIVED = """
住院机构名称 ZYJGMC inpatient_institution_name text -
住院机构组织机构代码 ZYJGZZJGDM inpatient_institution_org_code text -
入院日期 RYRQ admission_date date -
住院患者住院次数 ZYHZZYCS admission_count number -
病案号 BAH medical_record_number text -
住院患者入院科室名称 ZYHZRYKSMC admission_department_name text -
住院患者入院病情 ZYHZRYBQ admission_condition_code code -
住院患者医院感染名称 ZYHZYYGRMC hospital_infection_name text -
住院患者损伤和中毒外部原因 ZYHZSSHZDWBYY injury_poisoning_external_cause text -
住院患者血清学检查项目代码 ZYHZXQXJCXMDM serology_test_code code serology_test
住院患者血清学检查结果代码 ZYHZXQXJCJGDM serology_result_code code serology_result
疾病诊断名称 JBZDMC diagnosis_name text -
疾病诊断代码 JBZDDM diagnosis_code text -
确诊日期 QZRQ diagnosis_confirmed_date date -
住院患者诊断符合情况-详细描述 ZYHZZDFHQKXXMS diagnosis_agreement_description text -
住院患者诊断符合情况-代码 ZYHZZDFHQKDM diagnosis_agreement_code code -
住院患者疾病诊断类型-详细描述 ZYHZJBZDLXXXMS diagnosis_type_description text -
住院患者疾病诊断类型-代码 ZYHZJBZDLXDM diagnosis_type_code code -
住院患者治疗结果代码 ZYHZZLJGDM treatment_result_code code -
手术/操作-名称 ZYSSCZMC inpatient_procedure_name text -
手术/操作-代码 ZYSSCZDM inpatient_procedure_code text -
手术/操作-日期 ZYSSCZRQ inpatient_procedure_date date -
麻醉-方法 MZFF anesthesia_method text -
麻醉-方法代码 MZFFDM anesthesia_method_code code -
手术切口愈合等级代码 SSQKYHDJDM incision_healing_grade_code code incision_healing_grade
住院期间输血品种代码 ZYQJSXPZDM transfusion_type_code code transfusion_type
住院期间输血量 ZYQJSXL transfusion_volume number -
住院患者输血量计量单位 ZYHZSXLJLDW transfusion_volume_unit text -
住院患者抢救次数 ZYHZQJCS rescue_count number -
住院患者抢救成功次数 ZYHZQJCGCS rescue_success_count number -
出院日期 CYRQ discharge_date date -
住院患者出院科室名称 ZYHZCYKSMC discharge_department_name text -
住院患者住院天数 ZYHZZYTS length_of_stay_days number -
住院患者尸检标志 ZYHZSJBZ autopsy_flag flag -
住院患者随诊标志 ZYHZSZBZ follow_up_flag flag -
住院费用-医疗付款方式代码 ZYFYYLFKFSDM inpatient_payment_method_code code payment_method
住院费用-分类 ZYFYFL inpatient_fee_category text -
住院费用-分类代码 ZYFYFLDM inpatient_fee_category_code text -
住院费用-金额 ZYFYJE inpatient_fee_amount decimal -
住院总费用 ZYZFY inpatient_total_cost decimal -
床位费 CWF bed_fee decimal -
住院护理费 ZYHLF nursing_fee decimal -
住院西药费 ZYXYF western_medicine_fee decimal -
住院中药费 ZYZYF chinese_medicine_fee decimal -
住院化验费 ZYHYF laboratory_fee decimal -
住院诊疗费 ZYZLF diagnosis_treatment_fee decimal -
住院手术费 ZYSSF surgery_fee decimal -
住院检查费 ZYJCF examination_fee decimal -
其他住院费用 QTZYFY other_inpatient_fees decimal -
就诊机构名称 JZJGMC visit_institution_name text -
就诊机构组织机构代码 JZJGZZJGDM visit_institution_org_code text -
就诊日期时间 JZRQSJ visit_datetime datetime -
门诊号 MZH outpatient_number text -
就医科室名称 JYKSMC visit_department_name text -
医疗付款方式 YLFKFS outpatient_payment_method_code code payment_method
症状名称 ZZMC symptom_name text -
症状代码 ZZDM symptom_code text -
诊断日期 ZDRQ diagnosis_date date -
门诊诊断名称 MZZDMC outpatient_diagnosis_name text -
门诊诊断代码 MZZDDM outpatient_diagnosis_code text -
发病日期时间 FBRQSJ onset_datetime datetime -
症状持续时间 ZZCXSJ symptom_duration_minutes number -
检查/检验项目名称 JCJYXMMC exam_item_name text -
检查/检验结果代码 JCJYJGDM exam_result_code code exam_result
检查/检验定量结果 JCJYDLJG exam_quantitative_result decimal -
检查/检验计量单位 JCJYJLDW exam_unit text -
检查/检验项目代码 JCJYXMDM exam_item_code text -
药物名称 YWMC drug_name text -
药物剂型代码 YWJXDM drug_dosage_form_code code -
用药天数 YYTS drug_days number -
药物使用频率 YWSYPL drug_frequency text -
药物使用剂量单位 YWSYJLDW drug_dose_unit text -
药物使用次剂量 YWSYCJL drug_single_dose decimal -
药物使用总剂量 YWSYZJL drug_total_dose decimal -
药物使用途径代码 YWSYTJDM drug_route_code code -
手术/操作名称 MZSSCZMC outpatient_procedure_name text -
手术/操作代码 MZSSCZDM outpatient_procedure_code text -
手术/操作日期 MZSSCZRQ outpatient_procedure_date date -
门诊费用分类名称 MZFYFLMC outpatient_fee_category_name text -
门诊费用分类代码 MZFYFLDM outpatient_fee_category_code code -
门诊费用金额 MZFYJE outpatient_fee_amount decimal -
"""

# The signature and certificate exist in both record files: codes prefixed by file.
SIGNATURE = """
DF03/EE 交易信息签名 ZYJYXXQM inpatient_signature
DF03/EE SAM卡证书 ZYSAMKZS inpatient_sam_certificate
DF03/ED 交易信息签名 MZJYXXQM outpatient_signature
DF03/ED SAM卡证书 MZSAMKZS outpatient_sam_certificate
"""

# Standard or code system cited by the reference, by code (group index stripped).
STANDARDS = {
    "FKJGDM": "WS 218",
    "YYCSDM": "GB/T 2260",
    "XB": "GB/T 2261.1",
    "MZ": "GB 3304",
    "SFZH": "GB 11643",
    "YLFYZFFS": "WS 364.13 CV07.10.003",
    "LXRGX": "GB/T 4761",
    "WHCD": "GB/T 4658",
    "HYZK": "GB/T 2261.2",
    "ZY": "GB/T 6565",
    "ZJLB": "WS 364.3 CV02.01.101",
    "ABOXX": "WS 364.9 CV04.50.005",
    "ZYJGZZJGDM": "WS 218",
    "ZYHZYYGRMC": "ICD-10",
    "ZYHZSSHZDWBYY": "ICD-10",
    "JBZDMC": "ICD-10",
    "JBZDDM": "ICD-10",
    "ZYHZJBZDLXDM": "CV5502.20",
    "ZYHZZLJGDM": "WS 364.11 CV05.10.010",
    "ZYSSCZMC": "ICD-9-CM",
    "ZYSSCZDM": "ICD-9-CM",
    "MZFF": "WS 364.12 CV06.00.103",
    "MZFFDM": "WS 364.12 CV06.00.103",
    "ZYFYYLFKFSDM": "WS 364.13 CV07.10.003",
    "JZJGZZJGDM": "WS 218",
    "YLFKFS": "WS 364.13 CV07.10.003",
    "ZZMC": "ICD-10",
    "ZZDM": "ICD-10",
    "MZZDMC": "ICD-10",
    "MZZDDM": "ICD-10",
    "JCJYXMDM": "LOINC",
    "YWJXDM": "WS 364.16 CV08.50.002",
    "YWSYTJDM": "WS 364.12 CV06.00.102",
    "MZSSCZMC": "ICD-9-CM",
    "MZSSCZDM": "ICD-9-CM",
    "MZFYFLDM": "WS 364.13 CV07.10.001",
}

ALIASES = {59: ["GMWZFY"]}  # the DLL prototype spells item 59 GMWZFY


def _none(text: str) -> str | None:
    return None if text == "-" else text


def _standard(code: str) -> str | None:
    return STANDARDS.get(code) or STANDARDS.get(re.sub(r"\d+$", "", code))


def _row(
    no: int,
    code: str,
    national: bool,
    zh: str,
    name: str,
    fmt: str,
    length: int,
    file: str,
    record: int | None,
    offset: int | None,
    kind: str,
    table: str | None,
) -> dict[str, object]:
    return {
        "no": no,
        "tag": no if record is not None else None,
        "code": code,
        "code_is_national": national,
        "name": name,
        "name_zh": zh,
        "fmt": fmt,
        "len": length,
        "file": file,
        "record": record,
        "offset": offset,
        "kind": kind,
        "table": table,
        "standard": _standard(code),
        "aliases": ALIASES.get(no, []),
    }


def _national() -> list[dict[str, object]]:
    rows = []
    for line in NATIONAL.strip().splitlines():
        no, code, zh, name, fmt_len, where, kind, table = line.split()
        fmt, length = re.fullmatch(r"([a-z]+)(\d+)", fmt_len).groups()  # type: ignore[union-attr]
        file, loc = re.fullmatch(r"(\w+/\w+)([r@]\d+)", where).groups()  # type: ignore[union-attr]
        record = int(loc[1:]) if loc[0] == "r" else None
        offset = int(loc[1:]) if loc[0] == "@" else None
        rows.append(
            _row(
                int(no),
                code,
                True,
                zh,
                name,
                fmt,
                int(length),
                file,
                record,
                offset,
                kind,
                _none(table),
            )
        )
    return rows


_OFFSET_ROW = re.compile(
    r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(cn|ans|b)\s*\|\s*([^|]+?)\s*\|"
)


def _offset_rows(section: str) -> list[tuple[int, int, int, str, str]]:
    text = REFERENCE.read_text(encoding="utf-8")
    start = text.index(section)
    end = text.index("\n### ", start + 1)
    rows = []
    for line in text[start:end].splitlines():
        if m := _OFFSET_ROW.match(line):
            no, off, length, fmt, zh = m.groups()
            rows.append((int(no), int(off), int(length), fmt, zh))
    return rows


def _derived(layout: str, section: str) -> list[dict[str, object]]:
    Names = tuple[str, str, str, str | None]
    names: dict[str, Names] = {}
    for line in DERIVED.strip().splitlines():
        key, code, name, kind, table_name = line.split()
        names[key] = (code, name, kind, _none(table_name))
    signature: dict[str, Names] = {}
    for line in SIGNATURE.strip().splitlines():
        lay, zh, code, name = line.split()
        if lay == layout:
            signature[zh] = (code, name, "binary", None)
    out = []
    for no, off, length, fmt, zh in _offset_rows(section):
        entry: Names
        if zh in signature:
            entry = signature[zh]
        else:
            base, idx = re.fullmatch(r"(.*?)(\d*)", zh).groups()  # type: ignore[union-attr]
            entry = names[base]
            if idx:
                entry = (f"{entry[0]}{idx}", f"{entry[1]}_{idx}", entry[2], entry[3])
        code, name, kind, table = entry
        out.append(_row(no, code, False, zh, name, fmt, length, layout, None, off, kind, table))
    return out


def build_items() -> None:
    rows = _national() + _derived("DF03/EE", "### 2.3 ") + _derived("DF03/ED", "### 2.4 ")
    rows.sort(key=lambda r: int(str(r["no"])))
    body = ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in rows)
    ITEMS_JSON.parent.mkdir(parents=True, exist_ok=True)
    ITEMS_JSON.write_text("[\n" + body + "\n]\n", encoding="utf-8")
    print(f"wrote {len(rows)} items to {ITEMS_JSON}")


CLASSES = {
    "DDF1/EF05": ("IssuerData", "DDF1/EF05 发卡机构基本数据文件: card issuer data."),
    "DDF1/EF06": ("HolderData", "DDF1/EF06 持卡人基本信息数据文件: card holder basics."),
    "DDF1/EF07": ("Photo", "DDF1/EF07 照片文件: the holder's JPEG photo (at most 3072 bytes)."),
    "DDF1/EF08": ("CardContact", "DDF1/EF08: card expiry, holder phones and payment methods."),
    "DF01/EF05": ("Addresses", "DF01/EF05 地址信息文件: two typed addresses."),
    "DF01/EF06": ("Contacts", "DF01/EF06 联系人信息文件: three emergency contacts."),
    "DF01/EF07": ("OccupationMarriage", "DF01/EF07 职业婚姻信息文件: education, marriage, job."),
    "DF01/EF08": ("IdDocuments", "DF01/EF08 证件记录信息文件: ID document and record numbers."),
    "DF02/EF05": ("ClinicalBasics", "DF02/EF05 临床基本数据文件: blood groups and alert flags."),
    "DF02/EF06": ("SpecialInfo", "DF02/EF06 特殊信息数据文件: psychiatric illness flag."),
    "DF02/EF07": ("AllergyEntry", "One 120-byte record of DF02/EF07 过敏基本数据文件."),
    "DF02/EF08": ("ImmunizationEntry", "One 24-byte record of DF02/EF08 免疫基本数据文件."),
    "DF03/EF05": ("InpatientIndex", "DF03/EF05 住院信息索引文件: True = EE0n holds a record."),
    "DF03/EF06": ("OutpatientIndex", "DF03/EF06 门诊信息索引文件: True = ED0n holds a record."),
    "DF03/EE": ("InpatientRecord", "DF03/EE01-EE03 住院信息文件: one inpatient stay (1893 B)."),
    "DF03/ED": ("OutpatientRecord", "DF03/ED01-ED05 门诊信息文件: one outpatient visit (3267 B)."),
}
INDEX_RECORDS = {"DF03/EF05": 3, "DF03/EF06": 5}


def _annotation(item: dict[str, object]) -> tuple[str, str]:
    kind, fmt = item["kind"], item["fmt"]
    if kind == "index_flag":
        return "bool", "False"
    if kind == "flag":
        return "bool | None", "None"
    if fmt == "b" and kind == "code":
        return "int | None", "None"
    if fmt == "b":
        return "bytes", 'b""'
    return "str", '""'


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def build_classes() -> None:
    items = json.loads(ITEMS_JSON.read_text(encoding="utf-8"))
    lines = [
        '"""Frozen dataclasses, one per card file (fields = items in file order).',
        "",
        "Generated by ``scripts/gen_items.py classes`` from ``data/items.json``. Field names are",
        "the items' English names; ``tests/test_model_files.py`` checks they match the table.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from dataclasses import dataclass",
        "from typing import ClassVar",
        "",
        "from .base import FileValue",
        "",
        "__all__ = [",
        *[f'    "{name}",' for name, _ in sorted(CLASSES.values())],
        "]",
    ]
    for layout, (cls, doc) in CLASSES.items():
        members = [i for i in items if i["file"] == layout]
        members.sort(key=lambda i: (i["record"] or 0, i["offset"] or 0))
        lines += [
            "",
            "",
            "@dataclass(frozen=True, kw_only=True)",
            f"class {cls}(FileValue):",
            f'    """{doc}"""',
            "",
            f'    LAYOUT: ClassVar[str] = "{layout}"',
            "",
        ]
        for item in members:
            ann, default = _annotation(item)
            comment = f"  # {item['no']} {item['code']} {item['name_zh']}"
            if item["kind"] == "index_flag":
                for n in range(1, INDEX_RECORDS[layout] + 1):
                    lines.append(f"    {item['name']}_{n}: {ann} = {default}{comment} rec {n}")
            else:
                line = f"    {item['name']}: {ann} = {default}"
                if _width(line + comment) <= 100:
                    line += comment
                lines.append(line)
    FILES_PY.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(CLASSES)} classes to {FILES_PY}")


if __name__ == "__main__":
    {"items": build_items, "classes": build_classes}[sys.argv[1]]()
