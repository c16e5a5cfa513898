"""Issue 3, security groups through alibabacloud_ecs20140526: validation codes, quotas,
idempotent authorize, revoke, references and deletion, cross-account grants. (Membership
cases — leaving the last group, deleting a group with members — are in test_instances.py.)"""
from alibabacloud_ecs20140526 import models as m

from conftest import Api, db_snapshot, ecs_v3, wait_for


def vpc_for(f, key):
    vpc = Api(f, key, "vpc")
    vid = vpc("CreateVpc", CidrBlock="192.168.0.0/16")["VpcId"]
    wait_for(lambda: vpc("DescribeVpcs", VpcId=vid)["Vpcs"]["Vpc"][0]["Status"] == "Available")
    return vid


def rules(ecs, gid, direction="all"):
    return ecs("DescribeSecurityGroupAttribute", SecurityGroupId=gid, Direction=direction)["Permissions"]["Permission"]


def test_group_lifecycle(feitian, account):
    ecs = Api(feitian, account, "ecs")
    vid = vpc_for(feitian, account)
    gid = ecs("CreateSecurityGroup", VpcId=vid, SecurityGroupName="web", Description="web tier",
              **{"Tag.1.Key": "env", "Tag.1.Value": "dev"})["SecurityGroupId"]
    assert gid.startswith("sg-bp")
    listed = ecs("DescribeSecurityGroups", VpcId=vid)
    g = listed["SecurityGroups"]["SecurityGroup"][0]
    assert (g["SecurityGroupId"], g["SecurityGroupName"], g["SecurityGroupType"], g["EcsCount"]) == (gid, "web", "normal", 0)
    assert g["Tags"]["Tag"] == [{"TagKey": "env", "TagValue": "dev"}]
    assert ecs("DescribeSecurityGroups", SecurityGroupIds=f'["{gid}"]')["TotalCount"] == 1
    assert ecs("DescribeSecurityGroups", **{"Tag.1.Key": "env", "Tag.1.Value": "prod"})["TotalCount"] == 0
    attr = ecs("DescribeSecurityGroupAttribute", SecurityGroupId=gid)
    assert (attr["InnerAccessPolicy"], attr["VpcId"], attr["Permissions"]["Permission"]) == ("Accept", vid, [])
    ecs("ModifySecurityGroupAttribute", SecurityGroupId=gid, SecurityGroupName="frontend")
    ecs("ModifySecurityGroupPolicy", SecurityGroupId=gid, InnerAccessPolicy="Drop")
    attr = ecs("DescribeSecurityGroupAttribute", SecurityGroupId=gid)
    assert (attr["SecurityGroupName"], attr["InnerAccessPolicy"]) == ("frontend", "Drop")
    assert ecs.error("ModifySecurityGroupPolicy", SecurityGroupId=gid, InnerAccessPolicy="Maybe").code == "InvalidInnerAccessPolicy.Malformed"
    ent = ecs("CreateSecurityGroup", VpcId=vid, SecurityGroupType="enterprise")["SecurityGroupId"]
    assert ecs("DescribeSecurityGroupAttribute", SecurityGroupId=ent)["InnerAccessPolicy"] == "Drop"
    assert ecs.error("CreateSecurityGroup").code == "MissingParameter"
    assert ecs.error("CreateSecurityGroup", VpcId="vpc-bp000000000000000000").code == "InvalidVpcId.NotFound"
    ecs("DeleteSecurityGroup", SecurityGroupId=gid)
    assert ecs.error("DescribeSecurityGroupAttribute", SecurityGroupId=gid).code == "InvalidSecurityGroupId.NotFound"


def test_rule_validation_codes_and_nothing_stored(feitian, account):
    ecs = Api(feitian, account, "ecs")
    gid = ecs("CreateSecurityGroup", VpcId=vpc_for(feitian, account))["SecurityGroupId"]
    before = db_snapshot(feitian)
    cases = [
        (dict(IpProtocol="tcp", PortRange="200/1", SourceCidrIp="0.0.0.0/0"), "InvalidParam.PortRange"),
        (dict(IpProtocol="tcp", PortRange="0/80", SourceCidrIp="0.0.0.0/0"), "InvalidParam.PortRange"),
        (dict(IpProtocol="tcp", PortRange="1/65536", SourceCidrIp="0.0.0.0/0"), "InvalidParam.PortRange"),
        (dict(IpProtocol="icmp", PortRange="1/2", SourceCidrIp="0.0.0.0/0"), "InvalidParam.PortRange"),
        (dict(IpProtocol="sctp", PortRange="-1/-1", SourceCidrIp="0.0.0.0/0"), "InvalidIpProtocol.ValueNotSupported"),
        (dict(IpProtocol="tcp", PortRange="22/22", SourceCidrIp="0.0.0.0/0", Priority="0"), "InvalidPriority.ValueNotSupported"),
        (dict(IpProtocol="tcp", PortRange="22/22", SourceCidrIp="0.0.0.0/0", Priority="101"), "InvalidPriority.ValueNotSupported"),
        (dict(IpProtocol="tcp", PortRange="22/22", SourceCidrIp="0.0.0.0/0", Policy="allow"), "InvalidPolicy.Malformed"),
        (dict(IpProtocol="tcp", PortRange="22/22", SourceCidrIp="300.0.0.0/8"), "InvalidSourceCidrIp.Malformed"),
        (dict(IpProtocol="tcp", PortRange="22/22"), "MissingParameter.Source"),
        (dict(IpProtocol="tcp", PortRange="22/22", SourceCidrIp="0.0.0.0/0", Description="https://spam"), "InvalidSecurityGroupDiscription.Malformed"),
        (dict(IpProtocol="tcp", PortRange="22/22", SourceGroupId="sg-bp000000000000000000"), "InvalidSourceGroupId.NotFound"),
    ]
    for params, code in cases:
        assert ecs.error("AuthorizeSecurityGroup", SecurityGroupId=gid, **params).code == code, params
    e = ecs.error("AuthorizeSecurityGroupEgress", SecurityGroupId=gid, IpProtocol="tcp", PortRange="22/22", SourceGroupId=gid)
    assert e.code in ("InvalidSourceOrDestGroupId.DirectionMissmatch", "MissingParameter.Dest")
    assert ecs.error("AuthorizeSecurityGroup", SecurityGroupId="sg-bp000000000000000000", IpProtocol="tcp",
                     PortRange="22/22", SourceCidrIp="0.0.0.0/0").code == "InvalidSecurityGroupId.NotFound"
    assert db_snapshot(feitian) == before


def test_authorize_is_idempotent_and_case_insensitive(feitian, account):
    ecs = Api(feitian, account, "ecs")
    gid = ecs("CreateSecurityGroup", VpcId=vpc_for(feitian, account))["SecurityGroupId"]
    for proto in ("tcp", "TCP", "Tcp"):
        ecs("AuthorizeSecurityGroup", SecurityGroupId=gid, IpProtocol=proto, PortRange="22/22", SourceCidrIp="10.0.0.0/8")
    got = rules(ecs, gid)
    assert len(got) == 1
    r = got[0]
    assert (r["IpProtocol"], r["PortRange"], r["SourceCidrIp"], r["Policy"], r["Priority"], r["Direction"]) == \
        ("TCP", "22/22", "10.0.0.0/8", "Accept", "1", "ingress")
    assert r["SecurityGroupRuleId"].startswith("sgr-")
    # A different priority is a different rule.
    ecs("AuthorizeSecurityGroup", SecurityGroupId=gid, IpProtocol="tcp", PortRange="22/22", SourceCidrIp="10.0.0.0/8", Priority=5)
    assert len(rules(ecs, gid)) == 2


def test_typed_permissions_list(feitian, account):
    """The current SDK sends rules as Permissions.N.*; several in one call."""
    key = account
    ecs = Api(feitian, key, "ecs")
    gid = ecs("CreateSecurityGroup", VpcId=vpc_for(feitian, key))["SecurityGroupId"]
    P = m.AuthorizeSecurityGroupRequestPermissions
    req = m.AuthorizeSecurityGroupRequest(region_id="cn-hangzhou", security_group_id=gid, permissions=[
        P(ip_protocol="tcp", port_range="80/80", source_cidr_ip="0.0.0.0/0", priority="10"),
        P(ip_protocol="icmp", port_range="-1/-1", source_cidr_ip="192.168.0.0/16", policy="drop", description="no ping"),
    ])
    ecs_v3(feitian, key).authorize_security_group(req)
    got = {(r["IpProtocol"], r["Policy"], r["Priority"]) for r in rules(ecs, gid)}
    assert got == {("TCP", "Accept", "10"), ("ICMP", "Drop", "1")}
    E = m.AuthorizeSecurityGroupEgressRequestPermissions
    ecs_v3(feitian, key).authorize_security_group_egress(m.AuthorizeSecurityGroupEgressRequest(
        region_id="cn-hangzhou", security_group_id=gid,
        permissions=[E(ip_protocol="tcp", port_range="1/65535", dest_cidr_ip="10.0.0.1/32", source_cidr_ip="172.16.1.0/32",
                       source_port_range="22/22", policy="drop")]))
    egress = rules(ecs, gid, "egress")
    assert [(r["DestCidrIp"], r["SourceCidrIp"], r["SourcePortRange"]) for r in egress] == [("10.0.0.1/32", "172.16.1.0/32", "22/22")]


def test_rule_quota_is_all_or_nothing(feitian, account):
    ecs = Api(feitian, account, "ecs")
    gid = ecs("CreateSecurityGroup", VpcId=vpc_for(feitian, account))["SecurityGroupId"]
    perms = {}
    for i in range(99):
        perms[f"Permissions.{i + 1}.IpProtocol"] = "tcp"
        perms[f"Permissions.{i + 1}.PortRange"] = f"{i + 1}/{i + 1}"
        perms[f"Permissions.{i + 1}.SourceCidrIp"] = "0.0.0.0/0"
    ecs("AuthorizeSecurityGroup", SecurityGroupId=gid, **perms)
    assert len(rules(ecs, gid)) == 99
    two = {"Permissions.1.IpProtocol": "udp", "Permissions.1.PortRange": "1/1", "Permissions.1.SourceCidrIp": "0.0.0.0/0",
           "Permissions.2.IpProtocol": "udp", "Permissions.2.PortRange": "2/2", "Permissions.2.SourceCidrIp": "0.0.0.0/0"}
    assert ecs.error("AuthorizeSecurityGroup", SecurityGroupId=gid, **two).code == "AuthorizationLimitExceed"
    assert len(rules(ecs, gid)) == 99, "nothing of a refused call is applied"
    ecs("AuthorizeSecurityGroupEgress", SecurityGroupId=gid, IpProtocol="all", PortRange="-1/-1", DestCidrIp="0.0.0.0/0")
    assert len(rules(ecs, gid)) == 100
    # An identical rule is no new rule, so it passes even at the quota.
    ecs("AuthorizeSecurityGroup", SecurityGroupId=gid, IpProtocol="tcp", PortRange="1/1", SourceCidrIp="0.0.0.0/0")


def test_revoke(feitian, account):
    ecs = Api(feitian, account, "ecs")
    gid = ecs("CreateSecurityGroup", VpcId=vpc_for(feitian, account))["SecurityGroupId"]
    ecs("AuthorizeSecurityGroup", SecurityGroupId=gid, IpProtocol="tcp", PortRange="22/22", SourceCidrIp="10.0.0.0/8", Priority=5)
    ecs("AuthorizeSecurityGroup", SecurityGroupId=gid, IpProtocol="tcp", PortRange="80/80", SourceCidrIp="0.0.0.0/0")
    # Revoking a rule that does not exist, by its fields, is not an error.
    ecs("RevokeSecurityGroup", SecurityGroupId=gid, IpProtocol="udp", PortRange="53/53", SourceCidrIp="0.0.0.0/0")
    # By fields, without Priority: matches whatever the priority.
    ecs("RevokeSecurityGroup", SecurityGroupId=gid, IpProtocol="tcp", PortRange="22/22", SourceCidrIp="10.0.0.0/8")
    left = rules(ecs, gid)
    assert [r["PortRange"] for r in left] == ["80/80"]
    ecs("RevokeSecurityGroup", SecurityGroupId=gid, **{"SecurityGroupRuleId.1": left[0]["SecurityGroupRuleId"]})
    assert rules(ecs, gid) == []
    e = ecs.error("RevokeSecurityGroup", SecurityGroupId=gid, **{"SecurityGroupRuleId.1": "sgr-bp000000000000000000"})
    assert e.code == "InvalidParam.SecurityGroupRuleId"


def test_references_block_deletion(feitian, account):
    ecs = Api(feitian, account, "ecs")
    vid = vpc_for(feitian, account)
    web = ecs("CreateSecurityGroup", VpcId=vid, SecurityGroupName="web")["SecurityGroupId"]
    db = ecs("CreateSecurityGroup", VpcId=vid, SecurityGroupName="db")["SecurityGroupId"]
    ecs("AuthorizeSecurityGroup", SecurityGroupId=db, IpProtocol="tcp", PortRange="3306/3306", SourceGroupId=web, Priority=2)
    ecs("AuthorizeSecurityGroup", SecurityGroupId=db, IpProtocol="tcp", PortRange="3306/3306", SourceCidrIp="0.0.0.0/0",
        Policy="drop", Priority=100)
    perm = [r for r in rules(ecs, db) if r["SourceGroupId"]][0]
    assert (perm["SourceGroupName"], perm["NicType"]) == ("web", "intranet")
    refs = ecs("DescribeSecurityGroupReferences", **{"SecurityGroupId.1": web})["SecurityGroupReferences"]["SecurityGroupReference"]
    assert refs[0]["ReferencingSecurityGroups"]["ReferencingSecurityGroup"][0]["SecurityGroupId"] == db
    e = ecs.error("DeleteSecurityGroup", SecurityGroupId=web)
    assert (e.code, e.status_code) == ("DependencyViolation", 400)
    ecs("RevokeSecurityGroup", SecurityGroupId=db, IpProtocol="tcp", PortRange="3306/3306", SourceGroupId=web, Priority=2)
    ecs("DeleteSecurityGroup", SecurityGroupId=web)


def test_cross_account_grant(feitian, account):
    a = Api(feitian, account, "ecs")
    b_name = f"peer-{account[0][-8:].lower()}"
    b_key = feitian.new_account(b_name)
    b = Api(feitian, b_key, "ecs")
    ga = a("CreateSecurityGroup", VpcId=vpc_for(feitian, account))["SecurityGroupId"]
    gb = b("CreateSecurityGroup", VpcId=vpc_for(feitian, b_key))["SecurityGroupId"]
    # Without naming B, B's group is not A's to name.
    assert a.error("AuthorizeSecurityGroup", SecurityGroupId=ga, IpProtocol="tcp", PortRange="22/22",
                   SourceGroupId=gb).code == "InvalidSourceGroupId.NotFound"
    assert a.error("AuthorizeSecurityGroup", SecurityGroupId=ga, IpProtocol="tcp", PortRange="22/22",
                   SourceGroupId=gb, SourceGroupOwnerAccount="someone-else").code == "InvalidSourceGroupId.NotFound"
    a("AuthorizeSecurityGroup", SecurityGroupId=ga, IpProtocol="tcp", PortRange="22/22", SourceGroupId=gb,
      SourceGroupOwnerAccount=b_name)
    r = rules(a, ga)[0]
    assert (r["SourceGroupId"], r["SourceGroupOwnerAccount"]) == (gb, b_name)
    # B's own view: A's group stays invisible to B.
    assert b.error("DescribeSecurityGroupAttribute", SecurityGroupId=ga).code == "InvalidSecurityGroupId.NotFound"
    assert b("DescribeSecurityGroups")["TotalCount"] == 1


def test_vpc_with_groups_cannot_be_deleted(feitian, account):
    vpc, ecs = Api(feitian, account, "vpc"), Api(feitian, account, "ecs")
    vid = vpc_for(feitian, account)
    gid = ecs("CreateSecurityGroup", VpcId=vid)["SecurityGroupId"]
    e = vpc.error("DeleteVpc", VpcId=vid)
    assert (e.code, e.status_code) == ("DependencyViolation.SecurityGroup", 400)
    ecs("DeleteSecurityGroup", SecurityGroupId=gid)
    vpc("DeleteVpc", VpcId=vid)
