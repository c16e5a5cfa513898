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

The ECS part (API 2014-05-26) works the same way on more resources: security groups with
rules, key pairs, a Running instance with an EIP and a custom route (i_a), a Running victim
(i_run) and a Stopped one (i_stopped), and an instance of another account. Each base is one
of: a read or an idempotent repeat (authorizing a rule the group has, attaching the key pair
the instance has), a real change probed with DryRun, a real change done once by the probe and
undone before the snapshot (revoking a rule, detaching a key pair), or a call in the wrong
state (StartInstance on a Running instance: 403 IncorrectInstanceStatus). Documented leniency
is not sent as malformed: revoking a rule that does not exist, a CIDR peer beside a group peer
(the CIDR wins), unknown ids in AttachKeyPair's InstanceIds or ListTagResources'
ResourceId.N (reported per id, or skipped). The snapshot is taken only once no VPC, vSwitch or
instance is in a transitional state, since reconcilers write those.
"""
import base64
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional

import pytest

from conftest import db_snapshot
from raw_client import ECS, VPC, RawRpc, Request, enc, now_iso, protocol_pairs

PROTOCOL = {"Action", "Version", "Format", "AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion",
            "SignatureNonce", "Timestamp"}
INT32_MAX = 2**31 - 1
KB70 = "y" * (70 * 1024)  # over the server's 64 KiB per-value limit
ZONE = "cn-hangzhou-h"
NO_INSTANCE = "i-bp1nonexistent00000000"  # instance-shaped; no such instance exists
IMAGE = "feitian_linux_x64_1G_alibase_20261122.vhd"
ITYPE = "ecs.t5-lc1m1.small"

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
    """Replaces every `name.*` pair (a Tag.N list) with `extra` (pairs, or res -> pairs)."""
    def apply(pairs, name, res):
        return [(k, v) for k, v in pairs if not k.startswith(name + ".")] + list(_val(extra, res))
    return apply


def add_pairs(extra):
    """Appends `extra` (pairs, or res -> pairs) to the request, whatever the field."""
    def apply(pairs, name, res):
        return pairs + list(_val(extra, res))
    return apply


def renumber(prefix, new):
    """Moves every `prefix.1.*` pair to `prefix.<new>.*` (a Permissions.N rule to a bad index)."""
    def apply(pairs, name, res):
        old = f"{prefix}.1."
        return [((f"{prefix}.{new}." + k[len(old):]) if k.startswith(old) else k, v) for k, v in pairs]
    return apply


def R(template):
    """A value from the setup's resources: `R("{sg_a}")`."""
    return lambda res: template.format(**res)


def values(*groups):
    return [Mut(label, set_to(v)) for group in groups for label, v in group]


# --- field kinds: each returns the mutations that make that field invalid --------------------

@dataclass
class Field:
    name: str
    kind: Callable  # Field -> [Mut]
    required: bool = False
    sample: Optional[str] = None  # a valid value, to duplicate when the base lacks the field
    missing: str = "MissingParameter"  # the Code when a required field is left out or empty
    common: bool = True  # False: a list prefix (`InstanceId` of InstanceId.N), no value of its own

    def mutations(self):
        muts = list(self.kind(self))
        if self.common and self.kind is not tags_create and self.kind is not tags_filter:
            muts.append(Mut("over 64 KiB", set_to(KB70), "InvalidParameter"))
            muts.append(Mut("duplicated", duplicate_field(self.sample), "InvalidParameter"))
        if self.required:
            muts.append(Mut("missing", drop, self.missing))
            muts.append(Mut("empty", set_to(""), self.missing))
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


# --- ECS kinds ------------------------------------------------------------------------------

def index_list(most, item):
    """The indexes of a repeated `Name.N` list (1..`most`); `item` is a valid entry."""
    def kind(f):
        n = f.name
        v = R(item)
        return [Mut(label, with_pairs(p)) for label, p in [
            ("index 0", lambda res: [(f"{n}.0", v(res))]),
            ("index x", lambda res: [(f"{n}.x", v(res))]),
            ("index -1", lambda res: [(f"{n}.-1", v(res))]),
            (f"index {most + 1}", lambda res: [(f"{n}.{most + 1}", v(res))]),
            ("index 2^64", lambda res: [(f"{n}.18446744073709551616", v(res))]),
            ("index with a space", lambda res: [(f"{n}. 1", v(res))]),
            ("fullwidth index", lambda res: [(f"{n}.\uff11", v(res))]),
            (f"{most + 1} entries", lambda res: [(f"{n}.{i}", v(res)) for i in range(1, most + 2)]),
        ]]
    return kind


def json_ids(pattern, most, item=None, required=False):
    """A list parameter given as a JSON array (or comma-separated): JSON that does not parse
    into strings, or more than `most` entries. An unknown id just matches nothing."""
    def kind(f):
        it = item or pattern.format(i=0)
        bad = [("unclosed array", R(f'["{it}"')), ("a lone bracket", "["), ("numbers", "[1,2]"), ("null", "[null]"),
               ("nested array", R(f'[["{it}"]]')), ("trailing garbage", R(f'["{it}"]]')),
               ("single quotes", R(f"['{it}']")), ("an object in the array", '[{"a":1}]'),
               (f"{most + 1} ids in JSON", json.dumps([pattern.format(i=i) for i in range(most + 1)])),
               (f"{most + 1} ids with commas", ",".join(pattern.format(i=i) for i in range(most + 1)))]
        if required:
            bad.append(("an empty array", "[]"))
        return values(bad)
    return kind


def protocol(f):
    return values([("sctp", "sctp"), ("a protocol number", "6"), ("leading space", " tcp"), ("trailing space", "tcp "),
                   ("fullwidth", "\uff54\uff43\uff50"), ("icmpv6", "icmpv6"), ("two protocols", "tcp,udp")],
                  INJECTION[:4], UNICODE, HUGE[:1])


PORTS_MALFORMED = [
    ("one number", "22"), ("three parts", "22/22/22"), ("letters", "a/b"), ("open end", "1/"), ("open start", "/1"),
    ("a dash", "22-22"), ("spaces", "22 / 22"), ("fullwidth", "\uff12\uff12/\uff12\uff12"), ("decimal", "22.5/23"),
    ("plus sign", "+22/22")] + INJECTION[:3] + UNICODE[:3] + HUGE[:1]


def tcp_ports(f):
    return values([("reversed", "200/1"), ("port 0", "0/1"), ("port 65536", "1/65536"), ("-1/-1 for tcp", "-1/-1"),
                   ("negative", "-22/22"), ("2^32", "4294967296/4294967296")], PORTS_MALFORMED)


def any_ports(f):
    """The PortRange of an `all` rule: only -1/-1."""
    return values([("real ports for all", "1/65535"), ("one port for all", "22/22"), ("-1/1", "-1/1"),
                   ("0/0", "0/0"), ("-2/-2", "-2/-2")], PORTS_MALFORMED[:5], INJECTION[:2], UNICODE[:2])


def policy(f):
    return values([("allow", "allow"), ("deny", "deny"), ("reject", "reject"), ("trailing space", "accept "),
                   ("both", "accept,drop")], INJECTION[:3], UNICODE[:2], HUGE[:1])


def priority(f):
    return integer(1, 100)(f)


# A rule's CIDR takes host bits (10.0.0.1/8 is 10.0.0.0/8) and single addresses (a /32):
# those two are valid there.
RULE_CIDR_MALFORMED = [c for c in CIDR_MALFORMED if c[0] not in ("host bits set", "no prefix")]


def rule_cidr(f):
    return values(RULE_CIDR_MALFORMED)


def rule_cidr_conflict(peer):
    """The member-side CIDR of a rule: malformed, or the peer's own block (refused)."""
    def kind(f):
        return values(RULE_CIDR_MALFORMED, [("the peer's block", peer),
                                            ("the peer's block with host bits", "10.1.2.3/8")])
    return kind


def rule_description(f):
    # A rule's description may be 512 characters: only longer ones and URL prefixes are refused.
    return values([("513 chars", "d" * 513), ("http prefix", "http://evil.example/x"),
                   ("https prefix", "https://evil.example/x")], HUGE)


def wrong_direction_group(f):
    """DestGroupId on an ingress rule, SourceGroupId on an egress one: any value is refused."""
    return [Mut(m.label, m.apply, "InvalidSourceOrDestGroupId.DirectionMissmatch") for m in values(
        [("the group itself", R("{sg_a}")), ("another account's group", R("{sg_b}")), ("bare prefix", "sg-")],
        INJECTION[:2])]


def group_peer(f):
    return resource_id("sg", "sg_b", "vpc_a")(f)


def group_nic(f):
    """NicType of a group-to-group rule: only intranet."""
    return values([("internet with a group peer", "internet"), ("unknown value", "Unicorn")], INJECTION[:2])


def owner_account(f):
    return values([("another account's name", R("{account_b}")), ("no such account", "no-such-account-xyz"),
                   ("10 digits", "1234567890")], INJECTION[:3], UNICODE[:2])


def owner_id(f):
    return values([("letters", "abc"), ("negative", "-1"), ("2^64", str(2**64)), ("decimal", "1.5")], INJECTION[:2])


def rule_id(other_direction):
    def kind(f):
        return [Mut(m.label, m.apply, "InvalidParam.SecurityGroupRuleId") for m in values(
            [("bare prefix", "sgr-"), ("no such rule", "sgr-bp1nonexistent000000"),
             ("a rule of the other direction", R("{%s}" % other_direction)),
             ("another account's rule", R("{sgr_b}"))], INJECTION[:3], UNICODE[:2])]
    return kind


def key_pair_name(f):
    return values([("starts with a digit", "1key"), ("starts with a hyphen", "-key"), ("one char", "k"),
                   ("129 chars", "k" * 129), ("url", "http://key"), ("space", "a key"), ("slash", "a/b"),
                   ("tab", "a\tb"), ("letter then emoji", "k\U0001F600")], INJECTION, UNICODE, HUGE)


def key_pair_ref(f):
    """A KeyPairName that must name a key pair of the caller."""
    return values([("no such key pair", "no-such-key"), ("another account's key pair", R("{kp_b}")),
                   ("a wildcard", "probe-*")], INJECTION[:3], UNICODE[:2], HUGE[:1])


def key_pair_names(f):
    return values([("no such key pair", '["no-such-key"]'), ("one unknown of two", R('["{kp_victim}","no-such-key"]')),
                   ("another account's key pair", R('["{kp_b}"]')), ("unclosed array", R('["{kp_victim}"')),
                   ("numbers", "[1]"), ("null", "[null]"), ("nested array", R('[["{kp_victim}"]]')),
                   ("trailing garbage", R('["{kp_victim}"]]')), ("single quotes", R("['{kp_victim}']")),
                   ("an empty array", "[]"), ("101 names", json.dumps([f"k{i}" for i in range(101)]))],
                  INJECTION[:3], UNICODE[:2])


ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl probe@malformed"


def public_key(f):
    blob = ED25519.split()[1]
    return values([("type only", "ssh-rsa"), ("not base64", "ssh-rsa !!!notbase64"), ("not a key", "hello world"),
                   ("a DSA key", "ssh-dss AAAAB3NzaC1kc3MAAACBAP"), ("truncated", "ssh-ed25519 " + blob[:40]),
                   ("type does not match the blob", "ssh-rsa " + blob),
                   ("a private key", "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----")],
                  INJECTION[:3], UNICODE[:2], HUGE[:1])


def image_id(f):
    return values([("unknown image", "ubuntu_22_04_x64_20G_alibase_20230907.vhd"), ("trailing space", IMAGE + " "),
                   ("upper case", IMAGE.upper()), ("without .vhd", IMAGE[:-4])], INJECTION[:3], UNICODE[:2], HUGE[:1])


def instance_type(f):
    return values([("unknown type", "ecs.g99.huge"), ("upper case", ITYPE.upper()), ("a family", "ecs.t5"),
                   ("trailing space", ITYPE + " ")], INJECTION[:3], UNICODE[:2], HUGE[:1])


def instance_zone(f):
    return zone(f) + values([("not the vSwitch's zone", "cn-hangzhou-i")])


def password(f):
    return values([("7 chars", "Ab1!xyz"), ("31 chars", "Ab1!" + "x" * 27), ("lower case only", "abcdefghij"),
                   ("two kinds of characters", "abcdefgh12"), ("a space", "Abc 12345!"), ("starts with /", "/Abc12345"),
                   ("non-ASCII", "Abc12345\u00e9"), ("emoji", "Abc12345\U0001F600"), ("a tab", "Abc\t12345")],
                  INJECTION[:1], HUGE[:1])


def host_name(f):
    return values([("one char", "a"), ("65 chars", "h" * 65), ("starts with a hyphen", "-abc"),
                   ("ends with a hyphen", "abc-"), ("underscore", "a_b"), ("two dots", "a..b"), ("leading dot", ".abc"),
                   ("a space", "a b"), ("non-ASCII", "h\u00e9llo")], INJECTION, UNICODE[:2], HUGE[:1])


def user_data(f):
    return values([("not base64", "***"), ("a bad character", "YWJj!"), ("a space inside", "YW Jj"),
                   ("non-ASCII", "YWJj\u00e9"),
                   ("over 32 KiB decoded", base64.b64encode(b"#" * (32 * 1024 + 1)).decode())],
                  INJECTION[:3], UNICODE[:2])


def private_ip(f):
    return values([("octet 300", "192.168.1.300"), ("three octets", "192.168.1"), ("ipv6", "::1"),
                   ("a CIDR", "192.168.1.10/32"), ("trailing space", "192.168.1.10 "),
                   ("the network address", "192.168.1.0"), ("the broadcast address", "192.168.1.255"),
                   ("the gateway", "192.168.1.253"), ("outside the vSwitch", "192.168.2.10"),
                   ("outside the VPC", "10.0.0.5"), ("an address in use", R("{i_a_ip}"))],
                  INJECTION[:3], UNICODE[:1])


def float_size(f):
    return values([("letters", "abc"), ("negative", "-1"), ("NaN", "NaN"), ("infinity", "inf"), ("1e400", "1e400"),
                   ("comma decimal", "1,5"), ("hex", "0x10"), ("fullwidth", "\uff11"), ("emoji", "1\U0001F600"),
                   ("injection", "1; DROP TABLE vpcs")])


def image_status(f):
    return values([("unknown status", "Unicorn"), ("one bad of two", "Available,Unicorn"),
                   ("trailing comma", "Available,"), ("space after the comma", "Available, Creating")],
                  INJECTION[:3], UNICODE[:2], HUGE[:1])


def resource_type(f):
    return values([("unknown type", "Unicorn"), ("a VPC type", "vpc"), ("plural", "instances"),
                   ("two types", "instance,disk")], INJECTION[:3], UNICODE[:2], HUGE[:1])


def tag_target_type(f):
    """The ResourceType of TagResources/UntagResources: also a real type the id is not of."""
    return resource_type(f) + values([("the id is no disk", "disk"), ("the id is no group", "securitygroup")])


def next_token_ecs(f):
    return next_token(f) + values([("2^64-1 offset", "18446744073709551615")])


def group_of_instance(f):
    """A SecurityGroupIds.N entry for an instance of vpc_a: malformed, foreign, or of another VPC."""
    return resource_id("sg", "sg_b", "vpc_a")(f) + values([("a group of another VPC", R("{sg_other}"))])


def six_groups(pname):
    """More groups than an interface holds (5), each distinct."""
    groups = [(f"SecurityGroupIds.{i}", f"sg-bp1nonexistent00000{i:02d}") for i in range(1, 7)]
    return X("six groups", add_pairs(groups), "JoinedGroupLimitExceed", pname)


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
    probe: object = "ok"  # or a callable (rpc, key, res, spec, pairs), see probe_bases
    region: bool = True
    extra: list = field(default_factory=list)  # [(param, Mut)]: sets that break no single field


REGION = Field("RegionId", region, required=True)
DRY_RUN = Field("DryRun", boolean, sample="false")
PAGE_NUMBER = Field("PageNumber", integer(1, INT32_MAX), sample="1")


def page_size(most):
    return Field("PageSize", integer(1, most), sample="10")


def F(name_, kind, required=False, sample=None, missing="MissingParameter"):
    return Field(name_, kind, required, sample, missing)


def L(name_, most, item, required=False):
    """The list prefix of `name_.N` (at most `most` entries, `item` a valid entry)."""
    return Field(name_, index_list(most, item), required=required, common=False)


def X(label, apply, expect, param):
    """An extra malformed set of a Spec: `apply(pairs, name, res)`."""
    return (param, Mut(label, apply, expect))


# To extend: add a Spec per new action with a base request that is valid against the setup's
# resources (see make_ecs), and its fields with their kinds; add a kind above when a new type
# of parameter appears, and an `extra` set for what breaks no single field (two instances of
# which one is unknown, a list too long for a quota). The count assertions and the state check
# cover every Spec automatically.
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
         # NO_INSTANCE does not exist: the base fails at its last check.
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

# --- ECS: security groups, key pairs, instances, tags ----------------------------------------

# The rules the setup authorizes in sg_a: the Authorize bases repeat one of them (authorizing
# an identical rule changes nothing), the Revoke bases name a victim (the probe revokes it for
# real and authorizes it again before the snapshot).
RULES = {
    "in22": ("AuthorizeSecurityGroup", {"IpProtocol": "tcp", "PortRange": "22/22", "SourceCidrIp": "10.0.0.0/8",
                                        "Policy": "accept", "Priority": "1", "NicType": "intranet",
                                        "Description": "probe rule"}),
    "in80": ("AuthorizeSecurityGroup", {"IpProtocol": "tcp", "PortRange": "80/80", "SourceCidrIp": "10.0.0.0/8",
                                        "Policy": "accept", "Priority": "1", "NicType": "intranet"}),
    "in8080": ("AuthorizeSecurityGroup", {"IpProtocol": "tcp", "PortRange": "8080/8080", "SourceCidrIp": "10.0.0.0/8"}),
    "in_group": ("AuthorizeSecurityGroup", {"IpProtocol": "all", "PortRange": "-1/-1", "SourceGroupId": "{sg_a}",
                                            "Policy": "accept", "Priority": "1"}),
    "eg443": ("AuthorizeSecurityGroupEgress", {"IpProtocol": "tcp", "PortRange": "443/443", "DestCidrIp": "10.0.0.0/8",
                                               "Policy": "accept", "Priority": "1", "NicType": "intranet",
                                               "Description": "probe rule"}),
    "eg8443": ("AuthorizeSecurityGroupEgress", {"IpProtocol": "tcp", "PortRange": "8443/8443",
                                                "DestCidrIp": "10.0.0.0/8", "Policy": "accept", "Priority": "1",
                                                "NicType": "intranet"}),
    "eg9443": ("AuthorizeSecurityGroupEgress", {"IpProtocol": "tcp", "PortRange": "9443/9443",
                                                "DestCidrIp": "10.0.0.0/8"}),
    "eg_group": ("AuthorizeSecurityGroupEgress", {"IpProtocol": "all", "PortRange": "-1/-1", "DestGroupId": "{sg_a}",
                                                  "Policy": "accept", "Priority": "1"}),
}


def rule_base(name, prefix=""):
    return {"SecurityGroupId": "{sg_a}", **{prefix + k: v for k, v in RULES[name][1].items()}}


def authorize(rpc, key, res, name, group="sg_a"):
    action, fields = RULES[name]
    rpc.ok(key, ECS, action, RegionId="cn-hangzhou", SecurityGroupId=res[group],
           **{k: v.format(**res) for k, v in fields.items()})


def rule_id_of(rpc, key, res, name, group="sg_a"):
    action, fields = RULES[name]
    direction = "egress" if action.endswith("Egress") else "ingress"
    perms = rpc.ok(key, ECS, "DescribeSecurityGroupAttribute", RegionId="cn-hangzhou",
                   SecurityGroupId=res[group])["Permissions"]["Permission"]
    ids = [p["SecurityGroupRuleId"] for p in perms
           if p["Direction"] == direction and p["PortRange"] == fields["PortRange"]
           and p["IpProtocol"].lower() == fields["IpProtocol"]]
    assert len(ids) == 1, f"rule {name} of {res[group]}: {ids}"
    return ids[0]


def cycle(restore):
    """A probe for a base that really changes something: it must succeed, then `restore`
    (rpc, key, res) puts things back (before the snapshot)."""
    def probe(rpc, key, res, spec, pairs):
        r = rpc.call(key, spec.version, spec.action, pairs)
        assert r.status == 200, f"{spec.action} base: {r.status} {r.text()}"
        restore(rpc, key, res)
    return probe


def created(cleanup):
    """A probe for a create base: it must succeed; `cleanup(rpc, key, res, answer, pairs)` removes it."""
    def probe(rpc, key, res, spec, pairs):
        r = rpc.call(key, spec.version, spec.action, pairs)
        assert r.status == 200, f"{spec.action} base: {r.status} {r.text()}"
        cleanup(rpc, key, res, json.loads(r.body), dict(pairs))
    return probe


def ecs_ok(action, **fixed):
    """A restore step: one ECS call with resource templates."""
    def run(rpc, key, res):
        rpc.ok(key, ECS, action, **{k: v.format(**res) for k, v in fixed.items()})
    return run


def reauthorize(name, id_key=None):
    def run(rpc, key, res):
        authorize(rpc, key, res, name)
        if id_key:
            res[id_key] = rule_id_of(rpc, key, res, name)
    return run


def drop_key_pair(rpc, key, res, answer, pairs):
    rpc.ok(key, ECS, "DeleteKeyPairs", RegionId="cn-hangzhou", KeyPairNames=json.dumps([pairs["KeyPairName"]]))


def drop_group(rpc, key, res, answer, pairs):
    rpc.ok(key, ECS, "DeleteSecurityGroup", RegionId="cn-hangzhou", SecurityGroupId=answer["SecurityGroupId"])


OPTIONAL_REGION = F("RegionId", region)  # where the real API lets RegionId out
SG = F("SecurityGroupId", resource_id("sg", "sg_b", "vpc_a"), True)
INSTANCE = F("InstanceId", resource_id("i", "i_b", "vsw_a"), True)
INSTANCE_N = F("InstanceId.1", resource_id("i", "i_b", "vsw_a"), True)


def rule_fields(direction, prefix="", group_form=False):
    """The fields of one rule (`prefix` = "Permissions.1." for the list form)."""
    peer_cidr, local_cidr = ("SourceCidrIp", "DestCidrIp") if direction == "in" else ("DestCidrIp", "SourceCidrIp")
    peer_group, wrong_group = ("SourceGroupId", "DestGroupId") if direction == "in" else \
        ("DestGroupId", "SourceGroupId")
    owner = "SourceGroupOwner" if direction == "in" else "DestGroupOwner"
    missing_peer = "MissingParameter.Source" if direction == "in" else "MissingParameter.Dest"
    p = prefix
    common = [F(p + "IpProtocol", protocol, True), F(p + "Policy", policy, sample="accept"),
              F(p + "Priority", priority, sample="1"), F(p + wrong_group, wrong_direction_group, sample="{sg_a}")]
    if group_form:
        # A CIDR peer would win over the group (documented), so the group fields only count
        # in a rule without one.
        return common + [F(p + "PortRange", any_ports, True, missing="InvalidPortRange.Malformed"),
                         F(p + peer_group, group_peer, True, missing=missing_peer),
                         F(p + "NicType", group_nic, sample="intranet"),
                         F(p + owner + "Account", owner_account, sample="x"),
                         F(p + owner + "Id", owner_id, sample="1")]
    return common + [F(p + "PortRange", tcp_ports, True, missing="InvalidPortRange.Malformed"),
                     F(p + "SourcePortRange", tcp_ports, sample="1/65535"),
                     F(p + "NicType", enum("internet", "intranet"), sample="intranet"),
                     F(p + peer_cidr, rule_cidr, True, missing=missing_peer),
                     F(p + local_cidr, rule_cidr_conflict("10.0.0.0/8"), sample="192.168.1.0/24"),
                     F(p + "Description", rule_description, sample="probe rule")]


def permission_extras(direction):
    peer = "SourceCidrIp" if direction == "in" else "DestCidrIp"
    group = "SourceGroupId" if direction == "in" else "DestGroupId"
    missing_group = "InvalidSourceGroupId.NotFound" if direction == "in" else "InvalidDestGroupId.NotFound"
    rule = lambda n, port, **kw: [(f"Permissions.{n}.IpProtocol", "tcp"), (f"Permissions.{n}.PortRange", port)] + \
        [(f"Permissions.{n}.{k}", v) for k, v in kw.items()]
    X = lambda label, apply, expect, param="Permissions": (param, Mut(label, apply, expect))  # noqa: E731
    return [
        X("Permissions and top-level fields", add_pairs([("IpProtocol", "tcp"), ("PortRange", "22/22"),
                                                         (peer, "10.0.0.0/8")]), "InvalidParameter"),
        X("Permissions.0", renumber("Permissions", "0"), "InvalidParameter"),
        X("Permissions.x", renumber("Permissions", "x"), "InvalidParameter"),
        X("Permissions.-1", renumber("Permissions", "-1"), "InvalidParameter"),
        X("Permissions.101", renumber("Permissions", "101"), "InvalidParameter"),
        X("Permissions.2^64", renumber("Permissions", str(2**64)), "InvalidParameter"),
        X("a bad second rule", add_pairs(rule(2, "0/1", **{peer: "10.0.0.0/8"})), "InvalidParam.PortRange"),
        X("an incomplete second rule", add_pairs([("Permissions.2.IpProtocol", "udp")]), "InvalidPortRange.Malformed"),
        X("a new rule, then one naming an unknown group",
          with_pairs(rule(1, "2222/2222", **{peer: "10.0.0.0/8"}) +
                     rule(2, "22/22", **{group: "sg-bp1nonexistent0000000"})),
          missing_group),
        X("101 rules", with_pairs(
            [p for n in range(1, 102) for p in rule(n, f"{20000 + n}/{20000 + n}", **{peer: "10.0.0.0/8"})]),
          "InvalidParameter"),
        X("100 new rules, over the group's 100", with_pairs(
            [p for n in range(1, 101) for p in rule(n, f"{10000 + n}/{10000 + n}", **{peer: "10.0.0.0/8"})]),
          "AuthorizationLimitExceed"),
    ]


SG_ACTIONS = [
    Spec(ECS, "CreateSecurityGroup", {"VpcId": "{vpc_a}", "SecurityGroupName": "probe-new",
                                      "Description": "would be created"},
         [REGION, F("VpcId", resource_id("vpc", "vpc_b", "vsw_a"), True), F("SecurityGroupName", name),
          F("Description", description), F("SecurityGroupType", enum("normal", "enterprise"), sample="normal"),
          F("ClientToken", client_token, sample="tok-1"), F("Tag", tags_create)],
         probe=created(drop_group)),
    Spec(ECS, "DescribeSecurityGroups", {},
         [REGION, F("SecurityGroupIds", json_ids("sg-bp1{i:021d}", 100), sample='["{sg_a}"]'),
          F("SecurityGroupType", enum("normal", "enterprise"), sample="normal"),
          F("NetworkType", enum("vpc", "classic"), sample="vpc"), page_size(50), PAGE_NUMBER,
          F("MaxResults", integer(1, 100), sample="10"), F("NextToken", next_token, sample="x"), DRY_RUN,
          F("Tag", tags_filter)]),
    Spec(ECS, "DescribeSecurityGroupAttribute", {"SecurityGroupId": "{sg_a}"},
         [REGION, SG, F("Direction", enum("all", "ingress", "egress"), sample="all"),
          F("NicType", enum("internet", "intranet"), sample="intranet"),
          F("MaxResults", integer(10, 1000), sample="10"),
          F("NextToken", next_token, sample="1")]),
    Spec(ECS, "ModifySecurityGroupAttribute",
         {"SecurityGroupId": "{sg_a}", "SecurityGroupName": "{sg_a_name}", "Description": "{sg_a_desc}"},
         [REGION, SG, F("SecurityGroupName", name), F("Description", description)]),
    Spec(ECS, "ModifySecurityGroupPolicy", {"SecurityGroupId": "{sg_a}", "InnerAccessPolicy": "Accept"},
         [REGION, SG, F("InnerAccessPolicy", enum("Accept", "Drop"), True)]),
    Spec(ECS, "DeleteSecurityGroup", {"SecurityGroupId": "{sg_victim}"}, [REGION, SG],
         extra=[X("a group with members", set_to(R("{sg_a}")), "DependencyViolation", "SecurityGroupId")],
         probe=None),
    # Authorize: the bases repeat a rule sg_a already has.
    Spec(ECS, "AuthorizeSecurityGroup", rule_base("in22"), [REGION, SG] + rule_fields("in"),
         extra=[X("Permissions.1 too", add_pairs([("Permissions.1.IpProtocol", "tcp"),
                                                  ("Permissions.1.PortRange", "22/22"),
                                                  ("Permissions.1.SourceCidrIp", "10.0.0.0/8")]), "InvalidParameter",
                  "Permissions")]),
    Spec(ECS, "AuthorizeSecurityGroup", rule_base("in_group"), [SG] + rule_fields("in", group_form=True)),
    Spec(ECS, "AuthorizeSecurityGroup", rule_base("in22", "Permissions.1."),
         [REGION, SG] + rule_fields("in", "Permissions.1."), extra=permission_extras("in")),
    Spec(ECS, "AuthorizeSecurityGroupEgress", rule_base("eg443"), [REGION, SG] + rule_fields("eg")),
    Spec(ECS, "AuthorizeSecurityGroupEgress", rule_base("eg_group"), [SG] + rule_fields("eg", group_form=True)),
    Spec(ECS, "AuthorizeSecurityGroupEgress", rule_base("eg443", "Permissions.1."),
         [SG] + rule_fields("eg", "Permissions.1.")[:6], extra=permission_extras("eg")),
    # Revoke: the bases name a victim rule; revoking one that does not exist is no error.
    Spec(ECS, "RevokeSecurityGroup", rule_base("in80"), [REGION, SG] + rule_fields("in"),
         probe=cycle(reauthorize("in80"))),
    Spec(ECS, "RevokeSecurityGroup", {"SecurityGroupId": "{sg_a}", "SecurityGroupRuleId.1": "{sgr_in_victim}"},
         [REGION, SG, F("SecurityGroupRuleId.1", rule_id("sgr_eg"), True),
          L("SecurityGroupRuleId", 100, "{sgr_in_victim}")],
         extra=[X("one unknown of two", add_pairs([("SecurityGroupRuleId.2", "sgr-bp1nonexistent000000")]),
                  "InvalidParam.SecurityGroupRuleId", "SecurityGroupRuleId")],
         probe=cycle(reauthorize("in8080", "sgr_in_victim"))),
    Spec(ECS, "RevokeSecurityGroupEgress", rule_base("eg8443"), [REGION, SG] + rule_fields("eg"),
         probe=cycle(reauthorize("eg8443"))),
    Spec(ECS, "RevokeSecurityGroupEgress", {"SecurityGroupId": "{sg_a}", "SecurityGroupRuleId.1": "{sgr_eg_victim}"},
         [REGION, SG, F("SecurityGroupRuleId.1", rule_id("sgr_in"), True),
          L("SecurityGroupRuleId", 100, "{sgr_eg_victim}")],
         extra=[X("one unknown of two", add_pairs([("SecurityGroupRuleId.2", "sgr-bp1nonexistent000000")]),
                  "InvalidParam.SecurityGroupRuleId", "SecurityGroupRuleId")],
         probe=cycle(reauthorize("eg9443", "sgr_eg_victim"))),
    Spec(ECS, "DescribeSecurityGroupReferences", {"SecurityGroupId.1": "{sg_a}"},
         [REGION, F("SecurityGroupId.1", resource_id("sg", "sg_b", "vpc_a"), True),
          L("SecurityGroupId", 10, "{sg_a}")]),
]

KEY_PAIR_ACTIONS = [
    Spec(ECS, "CreateKeyPair", {"KeyPairName": "probe-new-key"},
         [REGION, F("KeyPairName", key_pair_name, True), F("Tag", tags_create)],
         extra=[X("an existing name", set_to(R("{kp_a}")), "KeyPair.AlreadyExist", "KeyPairName")],
         probe=created(drop_key_pair)),
    Spec(ECS, "ImportKeyPair", {"KeyPairName": "probe-imported", "PublicKeyBody": ED25519},
         [REGION, F("KeyPairName", key_pair_name, True), F("PublicKeyBody", public_key, True), F("Tag", tags_create)],
         extra=[X("an existing name", set_to(R("{kp_a}")), "KeyPair.AlreadyExist", "KeyPairName")],
         probe=created(drop_key_pair)),
    Spec(ECS, "DescribeKeyPairs", {},
         [REGION, F("IncludePublicKey", boolean, sample="false"), page_size(50), PAGE_NUMBER, F("Tag", tags_filter)]),
    Spec(ECS, "DeleteKeyPairs", {"KeyPairNames": '["{kp_victim}"]'},
         [REGION, F("KeyPairNames", key_pair_names, True)],
         probe=cycle(ecs_ok("ImportKeyPair", RegionId="cn-hangzhou", KeyPairName="{kp_victim}",
                            PublicKeyBody=ED25519))),
    Spec(ECS, "AttachKeyPair", {"KeyPairName": "{kp_a}", "InstanceIds": '["{i_a}"]'},
         [REGION, F("KeyPairName", key_pair_ref, True),
          F("InstanceIds", json_ids("i-bp1{i:021d}", 50, "{i_a}", required=True), True)]),
    Spec(ECS, "DetachKeyPair", {"KeyPairName": "{kp_a}", "InstanceIds": '["{i_a}"]'},
         [REGION, F("KeyPairName", key_pair_ref, True),
          F("InstanceIds", json_ids("i-bp1{i:021d}", 50, "{i_a}", required=True), True)],
         probe=cycle(ecs_ok("AttachKeyPair", RegionId="cn-hangzhou", KeyPairName="{kp_a}", InstanceIds='["{i_a}"]'))),
]


def create_fields(run):
    out = [REGION, F("ZoneId", instance_zone, sample=ZONE), F("ImageId", image_id, True),
           F("InstanceType", instance_type, True), F("VSwitchId", resource_id("vsw", "vsw_b", "vpc_a"), True),
           F("SecurityGroupId", group_of_instance, True), F("SecurityGroupIds.1", group_of_instance, sample="{sg_a2}"),
           L("SecurityGroupIds", 16, "{sg_a2}"), F("UserData", user_data, sample="IyEvYmluL3NoCg=="),
           F("Password", password, sample="Probe-pass1"), F("HostName", host_name), F("InstanceName", name),
           F("Description", description), F("PrivateIpAddress", private_ip, sample="192.168.1.100"),
           F("InternetMaxBandwidthOut", integer(0, 100), sample="0"),
           F("InternetChargeType", enum("PayByTraffic", "PayByBandwidth"), sample="PayByTraffic"),
           F("InstanceChargeType", enum("PostPaid", "PrePaid"), sample="PostPaid"),
           F("SystemDisk.Category", enum("cloud_essd", "cloud_ssd"), sample="cloud_essd"),
           F("SystemDisk.Size", integer(1, 2048), sample="20"), F("KeyPairName", key_pair_ref, sample="{kp_a}"),
           F("DeletionProtection", boolean, sample="false"), F("ClientToken", client_token, sample="tok-1"), DRY_RUN,
           F("Tag", tags_create)]
    if run:
        out += [F("Amount", integer(1, 100)), F("MinAmount", integer(1, 100), sample="1")]
    return out


NEW_INSTANCE = {"ImageId": IMAGE, "InstanceType": ITYPE, "VSwitchId": "{vsw_a}", "SecurityGroupId": "{sg_a}",
                "InstanceName": "probe-new", "HostName": "probe-new", "Description": "would be created"}

INSTANCE_ACTIONS = [
    Spec(ECS, "DescribeImages", {},
         [REGION, F("ImageId", json_ids("img{i}.vhd", 100), sample=IMAGE),
          F("ImageOwnerAlias", enum("system", "self", "others", "marketplace"), sample="system"),
          F("Status", image_status, sample="Available"), F("InstanceType", instance_type, sample=ITYPE),
          F("IsPublic", boolean, sample="true"), F("Usage", enum("instance", "none"), sample="none"),
          page_size(100), PAGE_NUMBER, DRY_RUN, F("Tag", tags_filter)]),
    Spec(ECS, "DescribeInstanceTypes", {},
         [L("InstanceTypes", 10, ITYPE), F("MinimumCpuCoreCount", integer(0, 1024), sample="1"),
          F("MaximumCpuCoreCount", integer(0, 1024), sample="4"), F("MinimumMemorySize", float_size, sample="1"),
          F("MaximumMemorySize", float_size, sample="8"), F("MaxResults", integer(1, 1600), sample="10"),
          F("NextToken", next_token, sample="x")], region=False),
    Spec(ECS, "RunInstances", {**NEW_INSTANCE, "Amount": "1"}, create_fields(True),
         extra=[six_groups("SecurityGroupIds"),
                X("a fixed address for two instances",
                  lambda pairs, n, res: set_to("2")(pairs, "Amount", res) + [("PrivateIpAddress", "192.168.1.100")],
                  "InvalidParameter", "PrivateIpAddress"),
                X("MinAmount above Amount", add_pairs([("MinAmount", "2")]), "InvalidParameter", "MinAmount")],
         probe="dryrun"),
    Spec(ECS, "CreateInstance", NEW_INSTANCE, create_fields(False), extra=[six_groups("SecurityGroupIds")],
         probe="dryrun"),
    # The lifecycle: Running instances (i_a, which the other actions use too, and i_run) and a
    # Stopped one (i_stopped). A base that would change one (i_run, i_stopped: victims, so that
    # a wrongly accepted stop cannot pull i_a from under the other actions) is probed with
    # DryRun; a base in the wrong state is refused with 403 IncorrectInstanceStatus.
    Spec(ECS, "StartInstance", {"InstanceId": "{i_a}"}, [INSTANCE, DRY_RUN], region=False,
         probe="IncorrectInstanceStatus"),
    Spec(ECS, "StartInstance", {"InstanceId": "{i_stopped}"}, [INSTANCE, DRY_RUN], region=False, probe="dryrun"),
    Spec(ECS, "StopInstance", {"InstanceId": "{i_run}"},
         [INSTANCE, F("ForceStop", boolean, sample="false"),
          F("StoppedMode", enum("StopCharging", "KeepCharging"), sample="KeepCharging"), DRY_RUN],
         region=False, probe="dryrun"),
    Spec(ECS, "RebootInstance", {"InstanceId": "{i_run}"}, [INSTANCE, F("ForceStop", boolean, sample="false"), DRY_RUN],
         extra=[X("a stopped instance", set_to(R("{i_stopped}")), "IncorrectInstanceStatus", "InstanceId")],
         region=False, probe="dryrun"),
    Spec(ECS, "DeleteInstance", {"InstanceId": "{i_a}"}, [INSTANCE, F("Force", boolean, sample="false"), DRY_RUN],
         region=False, probe="IncorrectInstanceStatus"),
    Spec(ECS, "DeleteInstance", {"InstanceId": "{i_stopped}"}, [INSTANCE, F("Force", boolean, sample="false"), DRY_RUN],
         region=False, probe="dryrun"),
    Spec(ECS, "StartInstances", {"InstanceId.1": "{i_a}"},
         [REGION, INSTANCE_N, L("InstanceId", 100, "{i_a}"),
          F("BatchOptimization", enum("AllTogether", "SuccessFirst"), sample="AllTogether"), DRY_RUN],
         probe="IncorrectInstanceStatus"),
    Spec(ECS, "StartInstances", {"InstanceId.1": "{i_stopped}"},
         [REGION, INSTANCE_N, L("InstanceId", 100, "{i_stopped}"),
          F("BatchOptimization", enum("AllTogether", "SuccessFirst"), sample="AllTogether"), DRY_RUN],
         extra=[X("a stopped and an unknown instance", add_pairs([("InstanceId.2", NO_INSTANCE)]),
                  "InvalidInstanceId.NotFound", "InstanceId")],
         probe="dryrun"),
    Spec(ECS, "StopInstances", {"InstanceId.1": "{i_run}"},
         [REGION, INSTANCE_N, L("InstanceId", 100, "{i_run}"), F("ForceStop", boolean, sample="false"),
          F("StoppedMode", enum("StopCharging", "KeepCharging"), sample="KeepCharging"),
          F("BatchOptimization", enum("AllTogether", "SuccessFirst"), sample="AllTogether"), DRY_RUN],
         # The Code of the next two sets is NotFound, unless a wrongly accepted stop got to i_run
         # first; either way nothing may change (the snapshot).
         extra=[X("a running and an unknown instance", add_pairs([("InstanceId.2", NO_INSTANCE)]), None, "InstanceId")],
         probe="dryrun"),
    Spec(ECS, "RebootInstances", {"InstanceId.1": "{i_run}"},
         [REGION, INSTANCE_N, L("InstanceId", 100, "{i_run}"), F("ForceReboot", boolean, sample="false"),
          F("BatchOptimization", enum("AllTogether", "SuccessFirst"), sample="AllTogether"), DRY_RUN],
         extra=[X("a running and an unknown instance", add_pairs([("InstanceId.2", NO_INSTANCE)]), None, "InstanceId"),
                X("a running and a stopped instance", add_pairs(lambda res: [("InstanceId.2", res["i_stopped"])]),
                  "IncorrectInstanceStatus", "InstanceId")],
         probe="dryrun"),
    Spec(ECS, "DeleteInstances", {"InstanceId.1": "{i_a}"},
         [REGION, INSTANCE_N, L("InstanceId", 100, "{i_a}"), F("Force", boolean, sample="false"), DRY_RUN],
         probe="IncorrectInstanceStatus"),
    Spec(ECS, "DeleteInstances", {"InstanceId.1": "{i_stopped}"},
         [REGION, INSTANCE_N, L("InstanceId", 100, "{i_stopped}"), F("Force", boolean, sample="false"), DRY_RUN],
         extra=[X("a stopped and an unknown instance", add_pairs([("InstanceId.2", NO_INSTANCE)]),
                  "InvalidInstanceId.NotFound", "InstanceId"),
                X("a stopped and a running instance", add_pairs(lambda res: [("InstanceId.2", res["i_a"])]),
                  "IncorrectInstanceStatus", "InstanceId")],
         probe="dryrun"),
    Spec(ECS, "DescribeInstances", {},
         [REGION, F("InstanceIds", json_ids("i-bp1{i:021d}", 100), sample='["{i_a}"]'),
          F("PrivateIpAddresses", json_ids("192.168.1.{i}", 100), sample='["192.168.1.1"]'),
          F("PublicIpAddresses", json_ids("198.18.0.{i}", 100), sample='["198.18.0.1"]'),
          F("EipAddresses", json_ids("198.18.1.{i}", 100), sample='["198.18.1.1"]'), F("ZoneId", zone, sample=ZONE),
          F("Status", enum("Running", "Pending", "Starting", "Stopping", "Stopped"), sample="Running"),
          page_size(100), PAGE_NUMBER, F("MaxResults", integer(1, 100), sample="10"),
          F("NextToken", next_token, sample="x"), DRY_RUN, F("Tag", tags_filter)]),
    Spec(ECS, "DescribeInstanceAttribute", {"InstanceId": "{i_a}"}, [INSTANCE], region=False),
    Spec(ECS, "DescribeInstanceStatus", {},
         [REGION, L("InstanceId", 100, "{i_a}"), F("ZoneId", zone, sample=ZONE), page_size(50), PAGE_NUMBER]),
    Spec(ECS, "ModifyInstanceAttribute", {"InstanceId": "{i_a}", "InstanceName": "{i_a_name}",
                                          "Description": "{i_a_desc}", "HostName": "{i_a_host}"},
         [INSTANCE, F("InstanceName", name), F("Description", description), F("HostName", host_name),
          F("Password", password, sample="Probe-pass1"),
          F("UserData", lambda f: user_data(f) + values([("valid, but the instance runs", "IyEvYmluL3NoCg==")]),
            sample="IyEvYmluL3NoCg=="),
          F("DeletionProtection", boolean, sample="false"),
          F("SecurityGroupIds.1", group_of_instance, sample="{sg_a}"), L("SecurityGroupIds", 16, "{sg_a}")],
         extra=[six_groups("SecurityGroupIds")], region=False),
    Spec(ECS, "AllocatePublicIpAddress", {"InstanceId": "{i_a}"}, [INSTANCE], region=False,
         probe="InvalidOperation.HasEip"),
    Spec(ECS, "JoinSecurityGroup", {"SecurityGroupId": "{sg_a3}", "InstanceId": "{i_a}"},
         [F("SecurityGroupId", group_of_instance, True), INSTANCE],
         extra=[X("a group the instance is in", set_to(R("{sg_a}")), "InvalidInstanceId.AlreadyExists",
                  "SecurityGroupId")],
         region=False, probe=cycle(ecs_ok("LeaveSecurityGroup", SecurityGroupId="{sg_a3}", InstanceId="{i_a}"))),
    Spec(ECS, "LeaveSecurityGroup", {"SecurityGroupId": "{sg_a2}", "InstanceId": "{i_a}"},
         [SG, INSTANCE],
         extra=[X("a group the instance is not in", set_to(R("{sg_a3}")), "InvalidInstanceId.NotInSecurityGroup",
                  "SecurityGroupId")],
         region=False, probe=cycle(ecs_ok("JoinSecurityGroup", SecurityGroupId="{sg_a2}", InstanceId="{i_a}"))),
    # JoinSecurityGroup/LeaveSecurityGroup take an optional RegionId: an unknown one is refused
    # like everywhere else. Aimed at i_stopped (in sg_a and sg_a2), so that a join or leave
    # wrongly let through changes nothing the other actions rely on.
    Spec(ECS, "JoinSecurityGroup", {"SecurityGroupId": "{sg_a3}", "InstanceId": "{i_stopped}"}, [OPTIONAL_REGION],
         probe=cycle(ecs_ok("LeaveSecurityGroup", SecurityGroupId="{sg_a3}", InstanceId="{i_stopped}"))),
    Spec(ECS, "LeaveSecurityGroup", {"SecurityGroupId": "{sg_a2}", "InstanceId": "{i_stopped}"}, [OPTIONAL_REGION],
         probe=cycle(ecs_ok("JoinSecurityGroup", SecurityGroupId="{sg_a2}", InstanceId="{i_stopped}"))),
    Spec(ECS, "DescribeDisks", {},
         [REGION, F("DiskIds", json_ids("d-bp1{i:021d}", 100), sample='["d-x"]'),
          F("DiskType", enum("all", "system", "data"), sample="all"), F("ZoneId", zone, sample=ZONE),
          page_size(100), PAGE_NUMBER, F("MaxResults", integer(1, 500), sample="10"),
          F("NextToken", next_token, sample="x"), DRY_RUN, F("Tag", tags_filter)]),
    Spec(ECS, "TagResources", {"ResourceType": "instance", "ResourceId.1": "{i_a}", "Tag.1.Key": "probe",
                               "Tag.1.Value": "yes"},
         [REGION, F("ResourceType", tag_target_type, True), F("ResourceId.1", resource_id("i", "i_b", "vsw_a"), True),
          L("ResourceId", 50, "{i_a}"), F("Tag", tags_create)],
         extra=[X("no Tag.N", with_pairs([]), "MissingParameter", "Tag"),
                X("a 21st tag on the resource", with_pairs([(f"Tag.{i}.Key", f"extra{i}") for i in range(1, 20)]),
                  "InvalidTagCount", "Tag")]),
    Spec(ECS, "UntagResources", {"ResourceType": "instance", "ResourceId.1": "{i_a}", "TagKey.1": "victim"},
         [REGION, F("ResourceType", tag_target_type, True), F("ResourceId.1", resource_id("i", "i_b", "vsw_a"), True),
          L("ResourceId", 50, "{i_a}"), L("TagKey", 20, "victim"), F("All", boolean, sample="false")],
         extra=[X("no TagKey.N and no All", with_pairs([]), "MissingParameter", "TagKey"),
                X("All=false and no TagKey.N", lambda pairs, n, res: with_pairs([])(pairs, "TagKey", res) +
                  [("All", "false")], "MissingParameter", "TagKey")],
         probe=cycle(ecs_ok("TagResources", RegionId="cn-hangzhou", ResourceType="instance",
                            **{"ResourceId.1": "{i_a}", "Tag.1.Key": "victim", "Tag.1.Value": "v"}))),
    Spec(ECS, "DescribeTasks", {},
         [REGION, F("TaskStatus", enum("Finished", "Processing", "Failed", "Cancelled"), sample="Finished"),
          page_size(100), PAGE_NUMBER]),
    # An unknown ResourceId.N is skipped here (no error), so only its shape can be wrong.
    Spec(ECS, "ListTagResources", {"ResourceType": "instance", "ResourceId.1": "{i_a}"},
         [REGION, F("ResourceType", resource_type, True), F("ResourceId.1", lambda f: [], True),
          L("ResourceId", 50, "{i_a}"), F("Tag", tags_filter), F("NextToken", next_token_ecs, sample="1")]),
]

# The VPC actions the ECS API also offers, on the same resources.
ECS_NETWORK_ACTIONS = [
    Spec(ECS, "ModifyVpcAttribute", {"VpcId": "{vpc_a}", "VpcName": "{vpc_a_name}", "Description": "{vpc_a_desc}"},
         [REGION, F("VpcId", resource_id("vpc", "vpc_b", "vsw_a"), True), F("VpcName", name),
          F("Description", description),
          F("CidrBlock", lambda f: vpc_cidr(f) + values([("narrower than its vSwitches", "192.168.1.0/24"),
                                                          ("not holding its vSwitches", "10.0.0.0/8")]),
            sample="192.168.0.0/16")]),
    Spec(ECS, "ModifyVSwitchAttribute",
         {"VSwitchId": "{vsw_a}", "VSwitchName": "{vsw_a_name}", "Description": "{vsw_a_desc}"},
         [REGION, F("VSwitchId", resource_id("vsw", "vsw_b", "vpc_a"), True), F("VSwitchName", name),
          F("Description", description)]),
    Spec(ECS, "DeleteVpc", {"VpcId": "{vpc_victim}"},
         [REGION, F("VpcId", resource_id("vpc", "vpc_b", "vsw_a"), True), DRY_RUN],
         extra=[X("a VPC with vSwitches", set_to(R("{vpc_a}")), "DependencyViolation", "VpcId")], probe="dryrun"),
    Spec(ECS, "DeleteVSwitch", {"VSwitchId": "{vsw_victim}"},
         [REGION, F("VSwitchId", resource_id("vsw", "vsw_b", "vpc_a"), True), DRY_RUN],
         extra=[X("a vSwitch with instances", set_to(R("{vsw_a}")), "DependencyViolation", "VSwitchId")],
         probe="dryrun"),
    Spec(ECS, "DescribeRouteTables", {},
         [REGION, page_size(50), PAGE_NUMBER, F("RouterType", enum("VRouter", "VBR"), sample="VRouter"),
          F("Type", enum("System", "Custom"), sample="System")]),
    Spec(ECS, "CreateRouteEntry", {"RouteTableId": "{vtb_a}", "DestinationCidrBlock": "10.88.0.0/16",
                                   "NextHopType": "Instance", "NextHopId": "{i_a}"},
         [REGION, F("RouteTableId", resource_id("vtb", "vtb_b", "vpc_a"), True),
          F("DestinationCidrBlock", lambda f: route_cidr(f) + values(
              [("inside a vSwitch's block", "192.168.1.0/25"), ("a vSwitch's block", "192.168.1.0/24"),
               ("a custom route's block", "10.77.0.0/16")]), True),
          F("NextHopType", enum("Instance", "NetworkInterface")),
          F("NextHopId", resource_id("i", "i_b", "vsw_a"), True),
          DRY_RUN, F("ClientToken", client_token, sample="tok-1")],
         probe="dryrun"),
    Spec(ECS, "DeleteRouteEntry", {"RouteTableId": "{vtb_a}", "DestinationCidrBlock": "10.77.0.0/16",
                                   "NextHopId": "{i_a}"},
         [REGION, F("RouteTableId", resource_id("vtb", "vtb_b", "vpc_a"), True),
          F("DestinationCidrBlock", lambda f: route_cidr(f) + values([("a system route", "192.168.1.0/24")]), True),
          F("NextHopId", resource_id("i", "i_b", "vsw_a")), DRY_RUN],
         probe=cycle(ecs_ok("CreateRouteEntry", RegionId="cn-hangzhou", RouteTableId="{vtb_a}",
                            DestinationCidrBlock="10.77.0.0/16", NextHopId="{i_a}"))),
    Spec(ECS, "AssociateEipAddress",
         {"AllocationId": "{eip_inst}", "InstanceId": "{i_a}", "InstanceType": "EcsInstance"},
         [REGION, F("AllocationId", lambda f: resource_id("eip", "eip_b", "vpc_a")(f) + values(
             [("a second EIP for the instance", R("{eip_a}"))]), True),
          F("InstanceId", lambda f: resource_id("i", "i_b", "vsw_a")(f) + values(
              [("an instance the EIP is not on", R("{i_stopped}"))]), True),
          F("InstanceType", enum("EcsInstance", "NetworkInterface"))]),
    Spec(ECS, "UnassociateEipAddress", {"AllocationId": "{eip_inst}", "InstanceId": "{i_a}"},
         [REGION, F("AllocationId", lambda f: resource_id("eip", "eip_b", "vpc_a")(f) + values(
             [("an EIP not associated", R("{eip_a}"))]), True),
          F("InstanceId", lambda f: resource_id("i", "i_b", "vsw_a")(f) + values(
              [("an instance the EIP is not on", R("{i_stopped}"))]), True)],
         probe=cycle(ecs_ok("AssociateEipAddress", RegionId="cn-hangzhou", AllocationId="{eip_inst}",
                            InstanceId="{i_a}"))),
    Spec(ECS, "ReleaseEipAddress", {"AllocationId": "{eip_victim}"},
         [REGION, F("AllocationId", resource_id("eip", "eip_b", "vpc_a"), True)],
         extra=[X("an EIP in use", set_to(R("{eip_inst}")), "IncorrectEipStatus", "AllocationId")], probe=None),
]

ECS_ACTIONS += SG_ACTIONS + KEY_PAIR_ACTIONS + INSTANCE_ACTIONS + ECS_NETWORK_ACTIONS

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
    oss = case.fmt == "OSS"
    xml = oss or case.fmt.lower() == "xml"
    want_ct = "application/xml" if oss else "text/xml;charset=utf-8" if xml else "application/json;charset=utf-8"
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
    id_header = "x-oss-request-id" if oss else "x-acs-request-id"
    if r.headers.get(id_header) != rid:
        return f"{id_header} {r.headers.get(id_header)!r} is not the RequestId {rid!r}"
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


TRANSITIONAL = ("'Pending'", "'Starting'", "'Stopping'")


def settled_snapshot(f, timeout=15):
    """The DB once nothing is in a transitional state any more: VPCs and vSwitches past
    Pending, instances past Pending/Starting/Stopping (the reconcilers would change those rows
    under us)."""
    deadline = time.monotonic() + timeout
    while True:
        snap = db_snapshot(f)
        busy = [r for t in ("vpcs", "vswitches", "instances") for r in snap.get(t, [])
                if any(s in r for s in TRANSITIONAL)]
        if not busy:
            return snap
        assert time.monotonic() < deadline, f"still in a transitional state: {busy}"
        time.sleep(0.05)


def wait_instances(rpc, key, wanted, timeout=20):
    """Waits until DescribeInstanceStatus shows each instance of `wanted` {id: status}."""
    deadline = time.monotonic() + timeout
    while True:
        params = {"RegionId": "cn-hangzhou", "PageSize": "50",
                  **{f"InstanceId.{n}": i for n, i in enumerate(wanted, 1)}}
        got = {s["InstanceId"]: s["Status"]
               for s in rpc.ok(key, ECS, "DescribeInstanceStatus", **params)["InstanceStatuses"]["InstanceStatus"]}
        if all(got.get(i) == st for i, st in wanted.items()):
            return
        assert time.monotonic() < deadline, f"instances not settled: {got}, wanted {wanted}"
        time.sleep(0.05)


def make_ecs(rpc, key_a, key_b, res):
    """Security groups, rules, key pairs, instances, an EIP on an instance and a custom route."""
    region = {"RegionId": "cn-hangzhou"}

    def group(key, vpc, name):
        return rpc.ok(key, ECS, "CreateSecurityGroup", **region, VpcId=vpc, SecurityGroupName=name,
                      Description=f"{name}: target of malformed requests")["SecurityGroupId"]

    res["sg_a"] = group(key_a, res["vpc_a"], "probe-sg")
    res["sg_a2"] = group(key_a, res["vpc_a"], "probe-sg-second")
    res["sg_a3"] = group(key_a, res["vpc_a"], "probe-sg-third")
    res["sg_victim"] = group(key_a, res["vpc_a"], "probe-sg-victim")
    res["sg_other"] = group(key_a, res["vpc_other"], "probe-sg-other-vpc")
    res["sg_b"] = group(key_b, res["vpc_b"], "other-account-sg")
    attr = rpc.ok(key_a, ECS, "DescribeSecurityGroupAttribute", **region, SecurityGroupId=res["sg_a"])
    res["sg_a_name"], res["sg_a_desc"] = attr["SecurityGroupName"], attr["Description"]
    for rule in RULES:
        authorize(rpc, key_a, res, rule)
    res["sgr_in"] = rule_id_of(rpc, key_a, res, "in22")
    res["sgr_eg"] = rule_id_of(rpc, key_a, res, "eg443")
    res["sgr_in_victim"] = rule_id_of(rpc, key_a, res, "in8080")
    res["sgr_eg_victim"] = rule_id_of(rpc, key_a, res, "eg9443")
    authorize(rpc, key_b, res, "in22", group="sg_b")
    res["sgr_b"] = rule_id_of(rpc, key_b, res, "in22", group="sg_b")

    res["kp_a"], res["kp_victim"], res["kp_b"] = "probe-key", "probe-key-victim", "probe-key-b"
    for key, kp in [(key_a, "kp_a"), (key_a, "kp_victim"), (key_b, "kp_b")]:
        rpc.ok(key, ECS, "ImportKeyPair", **region, KeyPairName=res[kp], PublicKeyBody=ED25519)

    res["i_a_name"], res["i_a_host"], res["i_a_desc"] = "probe-inst", "probe-host", "target of malformed requests"
    res["i_a"] = rpc.ok(key_a, ECS, "RunInstances", **region, ImageId=IMAGE, InstanceType=ITYPE,
                        VSwitchId=res["vsw_a"], KeyPairName=res["kp_a"], InstanceName=res["i_a_name"],
                        HostName=res["i_a_host"], Description=res["i_a_desc"],
                        **{"SecurityGroupIds.1": res["sg_a"], "SecurityGroupIds.2": res["sg_a2"],
                           "Tag.1.Key": "probe", "Tag.1.Value": "yes", "Tag.2.Key": "victim", "Tag.2.Value": "v"},
                        )["InstanceIdSets"]["InstanceIdSet"][0]
    res["i_stopped"] = rpc.ok(key_a, ECS, "CreateInstance", **region, ImageId=IMAGE, InstanceType=ITYPE,
                              VSwitchId=res["vsw_a"], InstanceName="probe-stopped",
                              **{"SecurityGroupIds.1": res["sg_a"], "SecurityGroupIds.2": res["sg_a2"]},
                              )["InstanceId"]
    res["i_run"] = rpc.ok(key_a, ECS, "RunInstances", **region, ImageId=IMAGE, InstanceType=ITYPE,
                          VSwitchId=res["vsw_a"], SecurityGroupId=res["sg_a"],
                          InstanceName="probe-run-victim")["InstanceIdSets"]["InstanceIdSet"][0]
    res["i_b"] = rpc.ok(key_b, ECS, "RunInstances", **region, ImageId=IMAGE, InstanceType=ITYPE,
                        VSwitchId=res["vsw_b"], SecurityGroupId=res["sg_b"])["InstanceIdSets"]["InstanceIdSet"][0]
    wait_instances(rpc, key_a, {res["i_a"]: "Running", res["i_run"]: "Running", res["i_stopped"]: "Stopped"})
    wait_instances(rpc, key_b, {res["i_b"]: "Running"})
    inst = rpc.ok(key_a, ECS, "DescribeInstanceAttribute", InstanceId=res["i_a"])
    res["i_a_ip"] = inst["VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0]

    res["eip_inst"] = rpc.ok(key_a, VPC, "AllocateEipAddress", **region)["AllocationId"]
    rpc.ok(key_a, VPC, "AssociateEipAddress", **region, AllocationId=res["eip_inst"], InstanceId=res["i_a"])
    rpc.ok(key_a, ECS, "CreateRouteEntry", **region, RouteTableId=res["vtb_a"], DestinationCidrBlock="10.77.0.0/16",
           NextHopId=res["i_a"])


@pytest.fixture(scope="module")
def targets(feitian):
    rpc = RawRpc(feitian.endpoint)
    tag = uuid.uuid4().hex[:8]
    key_a = feitian.new_account(f"malformed-a-{tag}")
    key_b = feitian.new_account(f"malformed-b-{tag}")
    a, (vsw_a, vsw_victim) = make_network(rpc, key_a, "192.168.0.0/16", ["192.168.1.0/24", "192.168.2.0/24"],
                                          "probe-main")
    victim, _ = make_network(rpc, key_a, "172.16.0.0/12", [], "probe-victim")
    other, _ = make_network(rpc, key_a, "10.0.0.0/16", [], "probe-other")
    b, (vsw_b,) = make_network(rpc, key_b, "192.168.0.0/16", ["192.168.1.0/24"], "other-account")
    eip_a = rpc.ok(key_a, VPC, "AllocateEipAddress", RegionId="cn-hangzhou")["AllocationId"]
    eip_victim = rpc.ok(key_a, VPC, "AllocateEipAddress", RegionId="cn-hangzhou")["AllocationId"]
    eip_b = rpc.ok(key_b, VPC, "AllocateEipAddress", RegionId="cn-hangzhou")["AllocationId"]
    vpc_attr = rpc.ok(key_a, VPC, "DescribeVpcAttribute", RegionId="cn-hangzhou", VpcId=a["VpcId"])
    vsw_attr = rpc.ok(key_a, VPC, "DescribeVSwitchAttributes", RegionId="cn-hangzhou", VSwitchId=vsw_a)
    res = {
        "vpc_a": a["VpcId"], "vtb_a": a["RouteTableId"], "vsw_a": vsw_a, "vsw_victim": vsw_victim,
        "vpc_victim": victim["VpcId"], "vpc_other": other["VpcId"], "eip_a": eip_a, "eip_victim": eip_victim,
        "vpc_b": b["VpcId"], "vtb_b": b["RouteTableId"], "vsw_b": vsw_b, "eip_b": eip_b,
        "vpc_a_name": vpc_attr["VpcName"], "vpc_a_desc": vpc_attr["Description"],
        "vsw_a_name": vsw_attr["VSwitchName"], "vsw_a_desc": vsw_attr["Description"],
        "account_b": f"malformed-b-{tag}",
    }
    make_ecs(rpc, key_a, key_b, res)
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
    for pname, m in spec.extra:
        out.append((f"{pname}: {m.label}", pname, m.apply, m.expect))
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

    # A request without Action is OSS's (DESIGN.md): it is refused by OSS, in OSS's XML.
    case("no Action", signed(base(), drop=("Action",)), None, 400, fmt="OSS")
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
    case("parameters in a JSON body", jb, None, None, fmt="OSS")  # no Action anywhere: OSS refuses it
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
        if callable(spec.probe):
            spec.probe(rpc, key, res, spec, pairs)
        elif spec.probe == "dryrun":
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
    print(f"\n{len(cases)} malformed sets ({len(distinct)} distinct, "
          f"{sum(1 for d in distinct if d[0] == ECS)} of them ECS) in {elapsed:.1f}s; answers: {summary}")
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
    ecs_distinct = sum(1 for d in distinct if d[0] == ECS)
    assert ecs_distinct >= 500, f"only {ecs_distinct} distinct malformed sets for ECS"
