"""Malformed input: hundreds of parameter sets that must each be refused.

The issue's requirement: "A test sends at least 500 malformed parameter sets across these
actions (wrong types, huge and unicode strings, negative and overflowing numbers,
injection-shaped strings, duplicated and missing parameters): every reply is a 4xx with a
Code, none a 5xx, and the state is unchanged."

The sets are generated, not written out: each action of ACTIONS names a valid base request
and the fields to break; each field has a kind (a region, an id, an integer range, a name, a
CIDR block, ...), and each kind lists the values that are invalid *for that kind*, each for
one clear reason. A value that could legitimately succeed is not malformed and is not here:
unicode or quotes in a Description are valid text, an unknown id in a Describe* filter just
matches nothing, an optional parameter sent empty counts as absent. Requests go out raw
(raw_client.py): V1-signed by hand, duplicates really duplicated on the wire, over GET query
strings and POST form bodies, in JSON and XML.

The bases use real resources of a dedicated account (a VPC with a vSwitch, an EIP, and a
victim of each delete action), so that a mutation the server wrongly accepts shows up as a
2xx and as a change in the database snapshot.
"""
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional

import pytest

from conftest import db_snapshot
from raw_client import ECS, VPC, RawRpc, Request, enc, now_iso, protocol_pairs

PROTOCOL = {"Action", "Version", "Format", "AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion",
            "SignatureNonce", "Timestamp"}
INT32_MAX = 2**31 - 1
KB70 = "y" * (70 * 1024)  # over the server's 64 KiB per-value limit
ZONE = "cn-hangzhou-h"
NO_INSTANCE = "i-bp1nonexistent00000000"  # instance-shaped; no instance exists (yet)

# --- invalid values, by family --------------------------------------------------------------

INJECTION = [
    ("sql injection", "' OR 1=1 --"),
    ("sql drop table", "\"; DROP TABLE vpcs; --"),
    ("path traversal", "../../etc/passwd"),
    ("script tag", "<script>alert(1)</script>"),
    ("jndi lookup", "${jndi:ldap://127.0.0.1:1389/a}"),
    ("literal %00", "%00"),
    ("format string", "%s%s%n%x"),
]
UNICODE = [
    ("emoji", "\U0001F600\U0001F525\U0001F4A5"),
    ("rtl override", "\u202egnp.exe"),
    ("control chars", "\x01\x07\x1b[2J\x7f"),
    ("combining marks", "\u0301\u0308\u20dd"),
    ("zero-width chars", "\u200b\u200d\ufeff"),
]
HUGE = [("10 KiB", "x" * 10240), ("10 Ki unicode chars", "\u00e9" * 10240)]

CIDR_MALFORMED = [
    ("prefix /33", "10.0.0.0/33"),
    ("octet 300", "300.1.1.1/8"),
    ("prefix /-1", "10.0.0.0/-1"),
    ("two prefixes", "10.0.0.0/8/8"),
    ("no prefix", "10.0.0.0"),
    ("empty prefix", "10.0.0.0/"),
    ("host bits set", "10.0.0.1/8"),
    ("five octets", "10.0.0.0.0/8"),
    ("ipv6", "fd00::/8"),
    ("letters", "ten.0.0.0/8"),
    ("trailing space", "10.0.0.0/8 "),
    ("fullwidth digits", "\uff11\uff10.0.0.0/8"),
] + INJECTION[:4] + UNICODE[:2] + HUGE[:1]


# --- mutations ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mut:
    """One way of breaking one field: `apply(pairs, name, res)` returns the new pairs.
    `expect` is the Code when only one is right (MissingParameter, InvalidParameter)."""
    label: str
    apply: Callable
    expect: Optional[str] = None


def _val(v, res):
    return v(res) if callable(v) else v


def set_to(value):
    def apply(pairs, name, res):
        v = _val(value, res)
        out, done = [], False
        for k, old in pairs:
            if k == name:
                if not done:
                    out.append((k, v))
                    done = True
            else:
                out.append((k, old))
        return out if done else out + [(name, v)]
    return apply


def drop(pairs, name, res):
    return [(k, v) for k, v in pairs if k != name]


def duplicate(second=None):
    """The parameter twice: its own value (or `second`) again."""
    def apply(pairs, name, res):
        cur = next((v for k, v in pairs if k == name), None)
        if cur is None:
            raise ValueError(f"duplicate of {name}: not in the base request")
        return pairs + [(name, cur if second is None else _val(second, res))]
    return apply


def duplicate_field(sample):
    """The parameter twice with the same valid value: the base's, or `sample`."""
    def apply(pairs, name, res):
        cur = next((v for k, v in pairs if k == name), None)
        if cur is None:
            if sample is None:
                raise ValueError(f"{name}: not in the base request and no sample to duplicate")
            cur = sample.format(**res)
        return [p for p in pairs if p[0] != name] + [(name, cur), (name, cur)]
    return apply


def with_pairs(extra):
    """Replaces every `name.*` pair (a Tag.N list) with `extra`."""
    def apply(pairs, name, res):
        return [(k, v) for k, v in pairs if not k.startswith(name + ".")] + list(extra)
    return apply


def values(*groups):
    return [Mut(label, set_to(v)) for group in groups for label, v in group]


# --- field kinds: each returns the mutations that make that field invalid --------------------

@dataclass
class Field:
    name: str
    kind: Callable  # Field -> [Mut]
    required: bool = False
    sample: Optional[str] = None  # a valid value, to duplicate when the base lacks the field

    def mutations(self):
        muts = list(self.kind(self))
        if self.kind is not tags_create and self.kind is not tags_filter:
            muts.append(Mut("over 64 KiB", set_to(KB70), "InvalidParameter"))
            muts.append(Mut("duplicated", duplicate_field(self.sample), "InvalidParameter"))
        if self.required:
            muts.append(Mut("missing", drop, "MissingParameter"))
            muts.append(Mut("empty", set_to(""), "MissingParameter"))
        return muts


def region(f):
    return values([("unknown region", "mars-north-1"), ("a zone id", ZONE), ("10 digits", "1234567890")],
                  INJECTION, UNICODE, HUGE)


def zone(f):
    return values([("unknown zone", "cn-hangzhou-z"), ("a region id", "cn-hangzhou")], INJECTION, UNICODE, HUGE)


def resource_id(prefix, other_account=None, other_kind=None):
    """An id field: malformed ids, another account's real id, an id of another kind."""
    def kind(f):
        muts = values([("bare prefix", f"{prefix}-"), ("overlong", f"{prefix}-" + "z" * 100),
                       ("instance-shaped overlong", "i-" + "z" * 100)], INJECTION, UNICODE, HUGE)
        if other_account:
            muts.append(Mut("another account's id", set_to(lambda res: res[other_account])))
        if other_kind:
            muts.append(Mut("an id of another kind", set_to(lambda res: res[other_kind])))
        return muts
    return kind


def id_list(pattern, most):
    """A comma-separated filter of at most `most` ids or addresses (`pattern` makes the i-th): an
    unknown id there just matches nothing, so only too many is clearly invalid."""
    def kind(f):
        return values([("too many ids", ",".join(pattern.format(i=i) for i in range(most + 1)))])
    return kind


def integer(lo, hi):
    """An integer parameter in lo..hi (the API's declared range; Integer parameters are 32-bit)."""
    def kind(f):
        bad = [("letters", "abc"), ("decimal", "1.5"), ("boolean", "true"), ("negative", "-1"),
               ("exponent", "1e3"), ("hex", "0x10"), ("fullwidth digits", "\uff11\uff10"),
               ("arabic-indic digits", "\u0661\u0660"), ("NaN", "NaN"), ("injection", "1; DROP TABLE vpcs"),
               ("emoji", "5\U0001F600"), ("2^63", str(2**63)), ("10^30", str(10**30)),
               ("-2^63-1", str(-(2**63) - 1))]
        if hi + 1 < 2**31:
            bad.append(("above max", str(hi + 1)))
        if lo > 0:
            bad.append(("zero", "0"))
        if lo - 1 not in (0, -1):
            bad.append(("below min", str(lo - 1)))
        if hi < 2**31:
            bad.append(("2^31 (int32 overflow)", str(2**31)))
        return values(bad)
    return kind


def boolean(f):
    return values([("maybe", "maybe"), ("yes", "yes"), ("2", "2"), ("typo", "truee"), ("-1", "-1"),
                   ("injection", "true' OR '1'='1"), ("emoji", "\u2705"), ("10 KiB", "t" * 10240)])


def enum(*valid):
    def kind(f):
        return values([("unknown value", "Unicorn"), ("two values", f"{valid[0]},{valid[-1]}")],
                      INJECTION[:3], UNICODE[:2], HUGE[:1])
    return kind


def name(f):
    return values([("starts with a digit", "1abc"), ("starts with a hyphen", "-abc"), ("129 chars", "a" * 129),
                   ("url", "http://evil.example"), ("slash", "a/b"), ("tab", "a\tb"), ("newline", "a\nb"),
                   ("letter then emoji", "a\U0001F600")], INJECTION, UNICODE, HUGE)


def description(f):
    # Unicode and quotes are valid in a description: only length and the URL prefixes are not.
    return values([("257 chars", "d" * 257), ("http prefix", "http://evil.example/x"),
                   ("https prefix", "https://evil.example/x")], HUGE)


def vpc_cidr(f):
    return values(CIDR_MALFORMED, [("public block", "8.8.8.0/24"), ("everything", "0.0.0.0/0"),
                                   ("172.32/16 (not private)", "172.32.0.0/16")])


def vswitch_cidr(f):
    return values(CIDR_MALFORMED, [("prefix /30", "192.168.3.0/30"), ("outside the VPC", "10.1.0.0/24"),
                                   ("same as a vSwitch", "192.168.1.0/24"),
                                   ("overlaps a vSwitch", "192.168.1.128/25"), ("the whole VPC", "192.168.0.0/16")])


def route_cidr(f):
    return values(CIDR_MALFORMED)


def user_cidr(f):
    return values(CIDR_MALFORMED[:6], [
        ("four blocks", "10.0.0.0/16,10.1.0.0/16,10.2.0.0/16,10.3.0.0/16"),
        ("one bad of two", "10.0.0.0/16,10.0.0.0/33")])


def client_token(f):
    return values([("65 chars", "t" * 65), ("non-ASCII", "\u4ee4\u724c-1"), ("10 KiB", "t" * 10240)])


def resource_group(f):
    return values([("bare prefix", "rg-"), ("no such group", "rg-acfmzzzzzzzzzzzz"), ("not an rg id", "vpc-abc")],
                  INJECTION[:3])


def ip_address(f):
    return values([("octet 300", "300.1.1.1"), ("three octets", "1.2.3"), ("ipv6", "::1"),
                   ("outside the pool", "8.8.8.8"), ("a CIDR", "198.18.0.5/32")], INJECTION[:3], UNICODE[:1])


def next_token(f):
    return values([("letters", "abc"), ("negative", "-1"), ("decimal", "1.5")], INJECTION[:3], UNICODE[:1])


TAG_INDEX = [
    ("Tag.0", [("Tag.0.Key", "k")]),
    ("Tag.x", [("Tag.x.Key", "k")]),
    ("Tag.99", [("Tag.99.Key", "k")]),
    ("Tag.21", [("Tag.21.Key", "k")]),
    ("Tag.-1", [("Tag.-1.Key", "k")]),
    ("Tag.2^64", [("Tag.18446744073709551616.Key", "k")]),
    ("Tag.1.Value without a key", [("Tag.1.Value", "v")]),
    ("21 tags", [(f"Tag.{i}.Key", f"k{i}") for i in range(1, 22)]),
    ("Tag.1.Key duplicated", [("Tag.1.Key", "k"), ("Tag.1.Key", "k2")]),
    ("Tag.1.Key over 64 KiB", [("Tag.1.Key", KB70)]),
]


def tags_create(f):
    return [Mut(label, with_pairs(p)) for label, p in TAG_INDEX + [
        ("key starts with aliyun", [("Tag.1.Key", "aliyun-x")]),
        ("key starts with acs:", [("Tag.1.Key", "acs:x")]),
        ("key of 129 chars", [("Tag.1.Key", "k" * 129)]),
        ("key with a URL", [("Tag.1.Key", "http://x")]),
        ("value of 129 chars", [("Tag.1.Key", "k"), ("Tag.1.Value", "v" * 129)]),
        ("value starts with https://", [("Tag.1.Key", "k"), ("Tag.1.Value", "https://x")]),
        ("the same key twice", [("Tag.1.Key", "k"), ("Tag.2.Key", "k")]),
    ]]


def tags_filter(f):
    return [Mut(label, with_pairs(p)) for label, p in TAG_INDEX]


# --- the actions ----------------------------------------------------------------------------

@dataclass
class Spec:
    """One action: a base request that is valid (or fails only at the very end, see `probe`)
    and the fields to break. `{name}` in a base value is a resource of the setup.

    `probe` checks the base itself before the batch: "ok" (it answers 200 and changes
    nothing), "dryrun" (with DryRun=true it answers DryRunOperation), "create:<cleanup>" (it
    really creates, then the resource is removed again), a Code (it is refused with that
    code, for a reason no mutation touches), or None (not probed)."""
    version: str
    action: str
    base: dict
    fields: list
    probe: Optional[str] = "ok"
    region: bool = True


REGION = Field("RegionId", region, required=True)
DRY_RUN = Field("DryRun", boolean, sample="false")
PAGE_NUMBER = Field("PageNumber", integer(1, INT32_MAX), sample="1")


def page_size(most):
    return Field("PageSize", integer(1, most), sample="10")


def F(name_, kind, required=False, sample=None):
    return Field(name_, kind, required, sample)


# To extend: add a Spec per new action (ECS security groups, key pairs, instances, ...) with a
# base request that is valid against the setup's resources, and its fields with their kinds;
# add a kind above when a new type of parameter appears. The count assertion and the state
# check cover every Spec automatically.
VPC_ACTIONS = [
    Spec(VPC, "CreateVpc", {"CidrBlock": "10.0.0.0/8", "VpcName": "probe-new", "Description": "would be created"},
         [REGION, F("CidrBlock", vpc_cidr), F("VpcName", name), F("Description", description),
          F("UserCidr", user_cidr, sample="10.0.0.0/16"), F("ClientToken", client_token, sample="tok-1"), DRY_RUN,
          F("Tag", tags_create), F("ResourceGroupId", resource_group, sample="rg-acfmzzzzzzzzzzzz")],
         probe="dryrun"),
    Spec(VPC, "DescribeVpcs", {},
         [REGION, F("VpcId", id_list("vpc-bp1{i:021d}", 20), sample="{vpc_a}"),
          F("IsDefault", boolean, sample="false"), page_size(50), PAGE_NUMBER, DRY_RUN, F("Tag", tags_filter)]),
    Spec(VPC, "DescribeVpcAttribute", {"VpcId": "{vpc_a}"},
         [REGION, F("VpcId", resource_id("vpc", "vpc_b", "vsw_a"), True), DRY_RUN,
          F("IsDefault", boolean, sample="false")]),
    Spec(VPC, "ModifyVpcAttribute", {"VpcId": "{vpc_a}", "VpcName": "{vpc_a_name}", "Description": "{vpc_a_desc}"},
         [REGION, F("VpcId", resource_id("vpc", "vpc_b", "vsw_a"), True), F("VpcName", name),
          F("Description", description), F("CidrBlock", vpc_cidr, sample="192.168.0.0/16")]),
    Spec(VPC, "DeleteVpc", {"VpcId": "{vpc_victim}"},
         [REGION, F("VpcId", resource_id("vpc", "vpc_b", "vsw_a"), True), DRY_RUN], probe="dryrun"),
    Spec(VPC, "CreateVSwitch", {"VpcId": "{vpc_a}", "CidrBlock": "192.168.3.0/24", "ZoneId": ZONE,
                                "VSwitchName": "probe-new", "Description": "would be created"},
         [REGION, F("ZoneId", zone, True), F("VpcId", resource_id("vpc", "vpc_b", "vsw_a"), True),
          F("CidrBlock", vswitch_cidr, True), F("VSwitchName", name), F("Description", description),
          F("ClientToken", client_token, sample="tok-1"), F("Tag", tags_create)],
         probe="create:DeleteVSwitch"),
    Spec(VPC, "DescribeVSwitches", {},
         [REGION, F("ZoneId", zone, sample=ZONE), page_size(50), PAGE_NUMBER, F("IsDefault", boolean, sample="false"),
          DRY_RUN, F("Tag", tags_filter)]),
    Spec(VPC, "DescribeVSwitchAttributes", {"VSwitchId": "{vsw_a}"},
         [REGION, F("VSwitchId", resource_id("vsw", "vsw_b", "vpc_a"), True), DRY_RUN]),
    Spec(VPC, "ModifyVSwitchAttribute",
         {"VSwitchId": "{vsw_a}", "VSwitchName": "{vsw_a_name}", "Description": "{vsw_a_desc}"},
         [REGION, F("VSwitchId", resource_id("vsw", "vsw_b", "vpc_a"), True), F("VSwitchName", name),
          F("Description", description)]),
    Spec(VPC, "DeleteVSwitch", {"VSwitchId": "{vsw_victim}"},
         [REGION, F("VSwitchId", resource_id("vsw", "vsw_b", "vpc_a"), True), DRY_RUN], probe="dryrun"),
    Spec(VPC, "DescribeRouteTables", {},
         [REGION, page_size(50), PAGE_NUMBER, F("RouterType", enum("VRouter", "VBR"), sample="VRouter"),
          F("Type", enum("System", "Custom"), sample="System")]),
    Spec(VPC, "DescribeRouteTableList", {},
         [REGION, page_size(50), PAGE_NUMBER, F("RouterType", enum("VRouter", "VBR"), sample="VRouter"),
          F("RouteTableType", enum("System", "Custom"), sample="System"), F("Tag", tags_filter)]),
    Spec(VPC, "CreateRouteEntry", {"RouteTableId": "{vtb_a}", "DestinationCidrBlock": "10.99.0.0/16",
                                   "NextHopType": "Instance", "NextHopId": NO_INSTANCE,
                                   "RouteEntryName": "probe-route", "Description": "would be created"},
         [REGION, F("RouteTableId", resource_id("vtb", "vtb_b", "vpc_a"), True),
          F("DestinationCidrBlock", route_cidr, True), F("NextHopType", enum("Instance", "NetworkInterface")),
          F("NextHopId", resource_id("i", None, "vsw_a"), True), F("RouteEntryName", name),
          F("Description", description), DRY_RUN, F("ClientToken", client_token, sample="tok-1")],
         # No instance exists yet to route to: the base fails at its last check.
         probe="InvalidNextHopId.NotFound"),
    Spec(VPC, "DeleteRouteEntry", {"RouteTableId": "{vtb_a}", "DestinationCidrBlock": "192.168.1.0/24"},
         [REGION, F("RouteTableId", resource_id("vtb", "vtb_b", "vpc_a"), True),
          F("DestinationCidrBlock", route_cidr, True), F("RouteEntryId", resource_id("rte"), sample="rte-x"),
          F("NextHopId", resource_id("i", None, "vsw_a"), sample=NO_INSTANCE), DRY_RUN],
         # The base names the system route of a vSwitch, which cannot be deleted.
         probe="OperationDenied.SystemRouteEntry"),
    Spec(VPC, "DescribeRouteEntryList", {"RouteTableId": "{vtb_a}"},
         [REGION, F("RouteTableId", resource_id("vtb", "vtb_b", "vpc_a"), True),
          F("MaxResult", integer(20, 100), sample="50"), F("NextToken", next_token, sample="x")]),
    Spec(VPC, "AllocateEipAddress", {"Bandwidth": "5", "InternetChargeType": "PayByTraffic", "ISP": "BGP",
                                     "Name": "probe-eip", "Description": "would be allocated"},
         [REGION, F("Bandwidth", integer(1, 500)), F("InternetChargeType", enum("PayByBandwidth", "PayByTraffic")),
          F("ISP", enum("BGP", "BGP_PRO")), F("Name", name), F("Description", description),
          F("ClientToken", client_token, sample="tok-1"), F("Tag", tags_create),
          F("IpAddress", ip_address, sample="198.18.200.1")],
         probe="create:ReleaseEipAddress"),
    Spec(VPC, "AssociateEipAddress", {"AllocationId": "{eip_a}", "InstanceId": NO_INSTANCE,
                                      "InstanceType": "EcsInstance"},
         [REGION, F("AllocationId", resource_id("eip", "eip_b", "vpc_a"), True),
          F("InstanceId", resource_id("i", None, "vsw_a"), True),
          F("InstanceType", enum("EcsInstance", "NetworkInterface"))],
         probe="InvalidInstanceId.NotFound"),
    Spec(VPC, "UnassociateEipAddress", {"AllocationId": "{eip_a}", "InstanceId": NO_INSTANCE},
         [REGION, F("AllocationId", resource_id("eip", "eip_b", "vpc_a"), True),
          F("InstanceId", resource_id("i", None, "vsw_a"))],
         probe="IncorrectEipStatus"),
    Spec(VPC, "ReleaseEipAddress", {"AllocationId": "{eip_victim}"},
         [REGION, F("AllocationId", resource_id("eip", "eip_b", "vpc_a"), True)], probe=None),
    Spec(VPC, "DescribeEipAddresses", {},
         [REGION, page_size(100), PAGE_NUMBER,
          F("Status", enum("Associating", "Unassociating", "InUse", "Available", "Releasing"), sample="Available"),
          F("AllocationId", id_list("eip-bp1{i:021d}", 50), sample="{eip_a}"),
          F("EipAddress", id_list("198.18.1.{i}", 50), sample="198.18.0.1"),
          DRY_RUN, F("Tag", tags_filter)]),
    Spec(VPC, "DescribeRegions", {}, [F("AcceptLanguage", enum("zh-CN", "en-US", "ja"), sample="en-US")],
         region=False),
    Spec(VPC, "DescribeZones", {},
         [REGION, F("AcceptLanguage", enum("zh-CN", "en-US", "ja"), sample="en-US"),
          F("ZoneType", enum("AvailabilityZone", "EdgeZone"), sample="AvailabilityZone")]),
]

ECS_ACTIONS = [
    Spec(ECS, "DescribeRegions", {},
         [F("AcceptLanguage", enum("zh-CN", "en-US", "ja"), sample="en-US"),
          F("InstanceChargeType", enum("PrePaid", "PostPaid"), sample="PostPaid"),
          F("ResourceType", enum("instance", "disk", "reservedinstance", "scu"), sample="instance")],
         region=False),
    Spec(ECS, "DescribeZones", {},
         [REGION, F("AcceptLanguage", enum("zh-CN", "en-US", "ja"), sample="en-US"),
          F("InstanceChargeType", enum("PrePaid", "PostPaid"), sample="PostPaid"),
          F("SpotStrategy", enum("NoSpot", "SpotWithPriceLimit", "SpotAsPriceGo"), sample="NoSpot"),
          F("Verbose", boolean, sample="false")]),
    Spec(ECS, "CreateVpc", {"CidrBlock": "10.0.0.0/8", "VpcName": "probe-new", "Description": "would be created"},
         [REGION, F("CidrBlock", vpc_cidr), F("VpcName", name), F("Description", description),
          F("UserCidr", user_cidr, sample="10.0.0.0/16"), F("ClientToken", client_token, sample="tok-1")],
         probe="create:DeleteVpc"),
    Spec(ECS, "DescribeVpcs", {},
         [REGION, F("VpcId", id_list("vpc-bp1{i:021d}", 20), sample="{vpc_a}"),
          F("IsDefault", boolean, sample="false"), page_size(50), PAGE_NUMBER]),
    Spec(ECS, "CreateVSwitch", {"VpcId": "{vpc_a}", "CidrBlock": "192.168.3.0/24", "ZoneId": ZONE,
                                "VSwitchName": "probe-new", "Description": "would be created"},
         [REGION, F("ZoneId", zone, True), F("VpcId", resource_id("vpc", "vpc_b", "vsw_a"), True),
          F("CidrBlock", vswitch_cidr, True), F("VSwitchName", name), F("Description", description),
          F("ClientToken", client_token, sample="tok-1")],
         probe="create:DeleteVSwitch"),
    Spec(ECS, "DescribeVSwitches", {},
         [REGION, F("ZoneId", zone, sample=ZONE), page_size(50), PAGE_NUMBER,
          F("IsDefault", boolean, sample="false")]),
    Spec(ECS, "AllocateEipAddress", {"Bandwidth": "5", "InternetChargeType": "PayByTraffic", "ISP": "BGP"},
         [REGION, F("Bandwidth", integer(1, 500)), F("InternetChargeType", enum("PayByBandwidth", "PayByTraffic")),
          F("ISP", enum("BGP", "BGP_PRO")), F("ClientToken", client_token, sample="tok-1")],
         probe="create:ReleaseEipAddress"),
    Spec(ECS, "DescribeEipAddresses", {},
         [REGION, page_size(100), PAGE_NUMBER,
          F("Status", enum("Associating", "Unassociating", "InUse", "Available", "Releasing"), sample="Available"),
          F("AllocationId", id_list("eip-bp1{i:021d}", 50), sample="{eip_a}"),
          F("EipAddress", id_list("198.18.1.{i}", 50), sample="198.18.0.1")]),
]

ACTIONS = VPC_ACTIONS + ECS_ACTIONS

# Mutations of the protocol parameters that every action gets.
PER_ACTION = [
    ("Action duplicated", "Action", Mut("duplicated", duplicate(), "InvalidParameter")),
    ("Version duplicated", "Version", Mut("duplicated", duplicate(), "InvalidParameter")),
    ("SignatureNonce duplicated", "SignatureNonce", Mut("duplicated", duplicate(lambda res: uuid.uuid4().hex),
                                                        "InvalidParameter")),
    ("Format JSON and XML", "Format", Mut("duplicated", duplicate("XML"), "InvalidParameter")),
]


# --- sending and checking -------------------------------------------------------------------

@dataclass
class Case:
    label: str
    version: str
    action: str
    pairs: list  # every pair but Signature, in send order
    method: str = "GET"
    fmt: str = "JSON"
    split: bool = False
    expect: Optional[str] = None
    expect_status: Optional[int] = None
    key: tuple = None
    request: Optional[Request] = None  # a hand-built request (protocol cases)

    def describe(self, limit=300):
        shown = [(k, v if len(v) <= 60 else f"{v[:40]!r}...({len(v)} chars)") for k, v in self.pairs
                 if k not in ("AccessKeyId", "SignatureNonce", "Timestamp", "SignatureMethod", "SignatureVersion")]
        s = f"{self.version} {self.action} [{self.label}] {self.method}{' split' if self.split else ''} {shown}"
        return s if len(s) <= limit else s[:limit] + "..."


def build_request(case, secret):
    if case.request is not None:
        return case.request
    encoded_len = sum(len(enc(k)) + len(enc(v)) + 2 for k, v in case.pairs)
    method = "POST" if encoded_len > 30000 else case.method  # a URI must stay under 64 KiB
    if method == "GET":
        req = Request("GET", query=list(case.pairs))
    elif case.split:
        req = Request("POST", query=[p for p in case.pairs if p[0] in PROTOCOL],
                      form=[p for p in case.pairs if p[0] not in PROTOCOL])
    else:
        req = Request("POST", form=list(case.pairs))
    case.method = method
    return req.sign(secret)


def problem(case, r):
    """What is wrong with the answer to a request that must be refused, or None."""
    if r.error:
        return f"no answer ({r.error}) after {r.elapsed:.1f}s"
    if r.status >= 500:
        return f"HTTP {r.status} (a 5xx is a bug): {r.text()}"
    if not 400 <= r.status < 500:
        return f"HTTP {r.status}, accepted: {r.text()}"
    xml = case.fmt.lower() == "xml"
    want_ct = "text/xml;charset=utf-8" if xml else "application/json;charset=utf-8"
    if r.headers.get("content-type") != want_ct:
        return f"HTTP {r.status} with Content-Type {r.headers.get('content-type')!r}, not {want_ct}: {r.text()}"
    try:
        doc = r.parsed()
    except Exception as e:  # noqa: BLE001
        return f"HTTP {r.status}, body does not parse ({e}): {r.text()}"
    if not isinstance(doc, dict) or (xml and doc.get("_root") != "Error"):
        return f"HTTP {r.status}, not an error document: {r.text()}"
    code, rid = doc.get("Code"), doc.get("RequestId")
    if not code or not rid:
        return f"HTTP {r.status}, Code or RequestId missing: {r.text()}"
    if r.headers.get("x-acs-request-id") != rid:
        return f"x-acs-request-id {r.headers.get('x-acs-request-id')!r} is not the RequestId {rid!r}"
    if case.expect and code != case.expect:
        return f"HTTP {r.status} {code}, expected {case.expect}: {r.text()}"
    if case.expect_status and r.status != case.expect_status:
        return f"HTTP {r.status} {code}, expected HTTP {case.expect_status}"
    return None


def code_of(r):
    try:
        return r.parsed().get("Code")
    except Exception:  # noqa: BLE001
        return None


# --- the setup: real resources to aim at ----------------------------------------------------

def make_network(rpc, key, vpc_cidr, vsw_cidrs, name):
    out = rpc.ok(key, VPC, "CreateVpc", RegionId="cn-hangzhou", CidrBlock=vpc_cidr, VpcName=name,
                 Description=f"{name}: target of malformed requests")
    vpc_id = out["VpcId"]
    wait_status(rpc, key, "DescribeVpcs", {"VpcId": vpc_id}, lambda b: b["Vpcs"]["Vpc"][0]["Status"])
    vsws = []
    for i, c in enumerate(vsw_cidrs):
        sid = rpc.ok(key, VPC, "CreateVSwitch", RegionId="cn-hangzhou", VpcId=vpc_id, CidrBlock=c, ZoneId=ZONE,
                     VSwitchName=f"{name}-sw{i}", Description=f"{name} switch {i}")["VSwitchId"]
        vsws.append(sid)
    for sid in vsws:
        wait_status(rpc, key, "DescribeVSwitchAttributes", {"VSwitchId": sid}, lambda b: b["Status"])
    return out, vsws


def wait_status(rpc, key, action, params, status_of, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        body = rpc.ok(key, VPC, action, RegionId="cn-hangzhou", **params)
        if status_of(body) == "Available":
            return body
        assert time.monotonic() < deadline, f"{action} {params}: not Available in {timeout}s"
        time.sleep(0.05)


def settled_snapshot(f, timeout=15):
    """The DB once nothing is Pending any more (the reconciler would change it under us)."""
    deadline = time.monotonic() + timeout
    while True:
        snap = db_snapshot(f)
        pending = [r for t in ("vpcs", "vswitches") for r in snap.get(t, []) if "'Pending'" in r]
        if not pending:
            return snap
        assert time.monotonic() < deadline, f"still Pending: {pending}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def targets(feitian):
    rpc = RawRpc(feitian.endpoint)
    tag = uuid.uuid4().hex[:8]
    key_a = feitian.new_account(f"malformed-a-{tag}")
    key_b = feitian.new_account(f"malformed-b-{tag}")
    a, (vsw_a, vsw_victim) = make_network(rpc, key_a, "192.168.0.0/16", ["192.168.1.0/24", "192.168.2.0/24"],
                                          "probe-main")
    victim, _ = make_network(rpc, key_a, "172.16.0.0/12", [], "probe-victim")
    b, (vsw_b,) = make_network(rpc, key_b, "192.168.0.0/16", ["192.168.1.0/24"], "other-account")
    eip_a = rpc.ok(key_a, VPC, "AllocateEipAddress", RegionId="cn-hangzhou")["AllocationId"]
    eip_victim = rpc.ok(key_a, VPC, "AllocateEipAddress", RegionId="cn-hangzhou")["AllocationId"]
    eip_b = rpc.ok(key_b, VPC, "AllocateEipAddress", RegionId="cn-hangzhou")["AllocationId"]
    vpc_attr = rpc.ok(key_a, VPC, "DescribeVpcAttribute", RegionId="cn-hangzhou", VpcId=a["VpcId"])
    vsw_attr = rpc.ok(key_a, VPC, "DescribeVSwitchAttributes", RegionId="cn-hangzhou", VSwitchId=vsw_a)
    res = {
        "vpc_a": a["VpcId"], "vtb_a": a["RouteTableId"], "vsw_a": vsw_a, "vsw_victim": vsw_victim,
        "vpc_victim": victim["VpcId"], "eip_a": eip_a, "eip_victim": eip_victim,
        "vpc_b": b["VpcId"], "vtb_b": b["RouteTableId"], "vsw_b": vsw_b, "eip_b": eip_b,
        "vpc_a_name": vpc_attr["VpcName"], "vpc_a_desc": vpc_attr["Description"],
        "vsw_a_name": vsw_attr["VSwitchName"], "vsw_a_desc": vsw_attr["Description"],
    }
    return rpc, key_a, key_b, res


def base_pairs(spec, res):
    pairs = [("RegionId", "cn-hangzhou")] if spec.region else []
    return pairs + [(k, v.format(**res)) for k, v in spec.base.items()]


def cases_for(spec, key, res):
    """Every malformed set of one action (pairs without Signature; nonce and time fresh)."""
    out = []
    for fld in spec.fields:
        for m in fld.mutations():
            out.append((f"{fld.name}: {m.label}", fld.name, m.apply, m.expect))
    for label, pname, m in PER_ACTION:
        out.append((label, pname, m.apply, m.expect))
    cases = []
    for label, pname, apply, expect in out:
        def make(fmt, label=label, pname=pname, apply=apply, expect=expect):
            pairs = protocol_pairs(key[0], spec.version, spec.action, fmt) + base_pairs(spec, res)
            return apply(pairs, pname, res), expect
        cases.append((label, make))
    return cases


# --- protocol-level malformations -----------------------------------------------------------

def protocol_cases(rpc, key, other_key, res):
    ak, secret = key

    def signed(pairs, method="GET", drop=(), secret_=secret, fmt="JSON"):
        pairs = [(k, v) for k, v in pairs if k not in drop]
        req = Request(method, query=pairs) if method == "GET" else Request(method, form=pairs)
        if "Signature" not in drop:
            req.sign(secret_)
        return req

    def base(action="DescribeVpcs", version=VPC, fmt="JSON", **over):
        pairs = protocol_pairs(ak, version, action, fmt) + [("RegionId", "cn-hangzhou")]
        for k, v in over.items():
            pairs = set_to(v)(pairs, k, res)
        return pairs

    out = []

    def case(label, req, expect=None, status=None, fmt="JSON", action="DescribeVpcs", version=VPC):
        out.append(Case(label, version, action, [], method=req.method, fmt=fmt, expect=expect, expect_status=status,
                        request=req))

    case("no Action", signed(base(), drop=("Action",)), "MissingParameter", 400)
    case("empty Action", signed(base(Action="")), "MissingParameter", 400)
    case("no Version", signed(base(), drop=("Version",)), "MissingParameter", 400)
    case("unknown Version", signed(base(Version="2099-01-01")), "InvalidVersion", 400)
    case("Version injection", signed(base(Version="2016-04-28' OR 1=1 --")), "InvalidVersion", 400)
    case("unknown Action", signed(base(Action="DescribeUnicorns")), "InvalidAction.NotFound", 404)
    case("Action injection", signed(base(Action="DescribeVpcs;DeleteVpc")), "InvalidAction.NotFound", 404)
    case("VPC-only action under the ECS version",
         signed(base("DescribeRouteEntryList", ECS)), "InvalidAction.NotFound", 404)
    case("Action over 64 KiB", signed(base(Action=KB70), method="POST"), None)
    case("no Signature", signed(base(), drop=("Signature",)), "MissingParameter", 400)
    req = signed(base(), drop=("Signature",))
    req.query.append(("Signature", "bm90IGEgc2lnbmF0dXJl"))
    case("garbage Signature", req, "SignatureDoesNotMatch", 400)
    case("signed with another secret", signed(base(), secret_="not-the-secret"), "SignatureDoesNotMatch", 400)
    case("signed with the other account's secret", signed(base(), secret_=other_key[1]),
         "SignatureDoesNotMatch", 400)
    req = signed(base())
    req.query.append(("Signature", "bm90IGEgc2lnbmF0dXJl"))
    case("Signature twice", req, "InvalidParameter", 400)
    case("SignatureMethod HMAC-MD5", signed(base(SignatureMethod="HMAC-MD5")), "InvalidSignatureMethod", 400)
    case("SignatureMethod HMAC-SHA256", signed(base(SignatureMethod="HMAC-SHA256")), "InvalidSignatureMethod", 400)
    case("no SignatureMethod", signed(base(), drop=("SignatureMethod",)), "MissingParameter", 400)
    case("SignatureVersion 2.0", signed(base(SignatureVersion="2.0")), "IncompleteSignature", 400)
    case("Timestamp garbage", signed(base(Timestamp="yesterday")), "InvalidTimeStamp.Format", 400)
    case("Timestamp injection", signed(base(Timestamp="' OR 1=1 --")), "InvalidTimeStamp.Format", 400)
    case("Timestamp 10 KiB", signed(base(Timestamp="9" * 10240)), "InvalidTimeStamp.Format", 400)
    case("Timestamp month 13", signed(base(Timestamp="2026-13-01T00:00:00Z")), "InvalidTimeStamp.Format", 400)
    case("Timestamp 1970", signed(base(Timestamp="1970-01-01T00:00:00Z")), "InvalidTimeStamp.Expired", 400)
    case("Timestamp 2099", signed(base(Timestamp="2099-01-01T00:00:00Z")), "InvalidTimeStamp.Expired", 400)
    case("no Timestamp", signed(base(), drop=("Timestamp",)), "MissingParameter", 400)
    case("no SignatureNonce", signed(base(), drop=("SignatureNonce",)), "MissingParameter", 400)
    case("AccessKeyId too short", signed(base(AccessKeyId="LTAI5")), "InvalidAccessKeyId.NotFound", 404)
    case("AccessKeyId of 200 chars", signed(base(AccessKeyId="LTAI" + "x" * 196)),
         "InvalidAccessKeyId.NotFound", 404)
    case("AccessKeyId one char longer", signed(base(AccessKeyId=ak + "x")), "InvalidAccessKeyId.NotFound", 404)
    case("AccessKeyId one char shorter", signed(base(AccessKeyId=ak[:-1])), "InvalidAccessKeyId.NotFound", 404)
    case("AccessKeyId unicode", signed(base(AccessKeyId="LTAI\u00e9\U0001F600")), "InvalidAccessKeyId.NotFound", 404)
    case("empty AccessKeyId", signed(base(AccessKeyId="")), "MissingParameter", 400)
    case("no AccessKeyId", signed(base(), drop=("AccessKeyId",)), "MissingParameter", 400)
    # A nonce the server has seen: the first use (not counted) succeeds, the replay must not.
    nonce = uuid.uuid4().hex
    first = rpc.send(signed(base(SignatureNonce=nonce)))
    assert first.status == 200, first.text()
    case("SignatureNonce replayed", signed(base(SignatureNonce=nonce)), "SignatureNonceUsed", 400)
    # Invalid UTF-8 in percent escapes: the server decodes it lossily, as signed here.
    pairs = base("DescribeVSwitches")
    signed_pairs = pairs + [("ZoneId", "\ufffd\ufffd")]
    req = Request("GET", raw_query=None, query=[])
    req.sign(secret, signed_pairs)
    req.raw_query = "&".join(f"{enc(k)}={enc(v)}" for k, v in pairs) + "&ZoneId=%FF%FE&" + \
        f"Signature={enc(req.query[-1][1])}"
    case("invalid UTF-8 in ZoneId", req, "InvalidZoneId.NotFound", 404, action="DescribeVSwitches")
    # Bodies: over 1 MiB; params in a JSON body (not a form) do not count.
    big = Request("POST", body=b"RegionId=" + b"x" * (1024 * 1024 + 100),
                  content_type="application/x-www-form-urlencoded")
    big.query = base()
    big.sign(secret, big.query)
    case("form body over 1 MiB", big, "RequestTooLarge", 413)
    big_xml = Request("POST", body=b"A" * (2 * 1024 * 1024), content_type="application/octet-stream")
    big_xml.query = base(fmt="XML")
    big_xml.sign(secret, big_xml.query)
    case("octet body over 1 MiB, Format=XML", big_xml, "RequestTooLarge", 413, fmt="XML")
    jb = Request("POST", body=json.dumps(dict(base())).encode(), content_type="application/json")
    case("parameters in a JSON body", jb, "MissingParameter", 400)
    # V3 headers that do not parse.
    for label, auth, code in [
            ("V3 Authorization garbage", "ACS3-HMAC-SHA256 garbage", "IncompleteSignature"),
            ("V3 unknown algorithm", f"ACS3-HMAC-MD5 Credential={ak},SignedHeaders=host,Signature=00",
             "InvalidSignatureMethod"),
            ("V3 without signed headers", f"ACS3-HMAC-SHA256 Credential={ak},SignedHeaders=,Signature=00",
             "IncompleteSignature")]:
        h = {"Authorization": auth, "x-acs-action": "DescribeVpcs", "x-acs-version": VPC,
             "x-acs-date": now_iso(), "x-acs-signature-nonce": uuid.uuid4().hex,
             "x-acs-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}
        case(label, Request("POST", query=[("RegionId", "cn-hangzhou")], headers=h), code, 400)
    # The same protocol faults answered in XML.
    for label, req_pairs, drop, expect, st in [
        ("XML: no Signature", base(fmt="XML"), ("Signature",), "MissingParameter", 400),
        ("XML: Timestamp garbage", base(fmt="XML", Timestamp="not-a-time"), (), "InvalidTimeStamp.Format", 400),
        ("XML: unknown Action", base(fmt="xml", Action="DescribeUnicorns"), (), "InvalidAction.NotFound", 404),
        ("XML: AccessKeyId unknown", base(fmt="XML", AccessKeyId="LTAI" + "q" * 20), (),
         "InvalidAccessKeyId.NotFound", 404),
    ]:
        case(label, signed(req_pairs, method="POST", drop=drop), expect, st, fmt="XML")
    return out


# --- the test -------------------------------------------------------------------------------

def probe_bases(rpc, key, res):
    """Each base request is what its Spec claims, so that a mutation is the one fault."""
    for spec in ACTIONS:
        if spec.probe is None:
            continue
        pairs = base_pairs(spec, res)
        if spec.probe == "dryrun":
            r = rpc.call(key, spec.version, spec.action, pairs + [("DryRun", "true")])
            assert (r.status, code_of(r)) == (400, "DryRunOperation"), f"{spec.action} base: {r.status} {r.text()}"
        elif spec.probe == "ok":
            r = rpc.call(key, spec.version, spec.action, pairs)
            assert r.status == 200, f"{spec.action} base: {r.status} {r.text()}"
        elif spec.probe.startswith("create:"):
            r = rpc.call(key, spec.version, spec.action, pairs)
            assert r.status == 200, f"{spec.action} base: {r.status} {r.text()}"
            body = json.loads(r.body)
            cleanup = spec.probe.split(":", 1)[1]
            if cleanup == "DeleteVpc":
                wait_status(rpc, key, "DescribeVpcs", {"VpcId": body["VpcId"]}, lambda b: b["Vpcs"]["Vpc"][0]["Status"])
                rpc.ok(key, VPC, "DeleteVpc", RegionId="cn-hangzhou", VpcId=body["VpcId"])
            elif cleanup == "DeleteVSwitch":
                wait_status(rpc, key, "DescribeVSwitchAttributes", {"VSwitchId": body["VSwitchId"]},
                            lambda b: b["Status"])
                rpc.ok(key, VPC, "DeleteVSwitch", RegionId="cn-hangzhou", VSwitchId=body["VSwitchId"])
            elif cleanup == "ReleaseEipAddress":
                rpc.ok(key, VPC, "ReleaseEipAddress", RegionId="cn-hangzhou", AllocationId=body["AllocationId"])
        else:
            r = rpc.call(key, spec.version, spec.action, pairs)
            assert 400 <= r.status < 500 and code_of(r) == spec.probe, f"{spec.action} base: {r.status} {r.text()}"


# Injection-shaped and unicode values go out in both formats: an answer that echoes them
# must stay well-formed JSON and XML.
ESCAPING = {label for label, _ in INJECTION + UNICODE}

TRANSPORTS = [("GET", "JSON", False), ("POST", "JSON", False), ("GET", "XML", False), ("POST", "xml", True),
              ("POST", "JSON", True), ("GET", "json", False), ("POST", "XML", False)]


def test_malformed_parameter_sets_are_refused(feitian, targets):
    rpc, key_a, key_b, res = targets
    started = time.monotonic()
    probe_bases(rpc, key_a, res)

    cases = []
    for spec in ACTIONS:
        for label, make in cases_for(spec, key_a, res):
            method, fmt, split = TRANSPORTS[len(cases) % len(TRANSPORTS)]
            fmts = [fmt]
            if label.split(": ", 1)[-1] in ESCAPING:  # values that the XML rendering must escape
                fmts = ["JSON", "XML"]
            for fmt in fmts:
                pairs, expect = make(fmt)
                cases.append(Case(label, spec.version, spec.action, pairs, method, fmt, split, expect, key=key_a))
    before = settled_snapshot(feitian)
    cases += protocol_cases(rpc, key_a, key_b, res)

    with ThreadPoolExecutor(8) as pool:  # every one is refused, so order does not matter
        replies = list(pool.map(lambda c: rpc.send(build_request(c, key_a[1])), cases))
    problems, codes, distinct = [], {}, set()
    for c, r in zip(cases, replies):
        p = problem(c, r)
        if p:
            problems.append(f"{c.describe()}\n    -> {p}")
        codes[(r.status, code_of(r))] = codes.get((r.status, code_of(r)), 0) + 1
        if c.request is None:
            volatile = ("SignatureNonce", "Timestamp", "Format")
            distinct.add((c.version, c.action, tuple((k, v) for k, v in c.pairs if k not in volatile)))
        else:
            distinct.add(("protocol", c.label))
    after = db_snapshot(feitian)
    elapsed = time.monotonic() - started

    summary = ", ".join(f"{s} {c}: {n}" for (s, c), n in sorted(codes.items(), key=lambda x: -x[1]))
    print(f"\n{len(cases)} malformed sets ({len(distinct)} distinct) in {elapsed:.1f}s; answers: {summary}")
    failures = []
    if problems:
        failures.append(f"{len(problems)} of {len(cases)} malformed sets were not refused properly:\n"
                        + "\n".join(problems[:100]) + ("\n..." if len(problems) > 100 else ""))
    for t in sorted(set(before) | set(after)):
        if before.get(t) != after.get(t):
            gone = sorted(set(before.get(t, [])) - set(after.get(t, [])))
            new = sorted(set(after.get(t, [])) - set(before.get(t, [])))
            failures.append(f"the state changed: table {t}: rows gone {gone}, rows new {new}")
    assert not failures, "\n".join(failures)
    assert len(distinct) >= 500, f"only {len(distinct)} distinct malformed sets"
    assert elapsed < 60, f"the batch took {elapsed:.0f}s"
