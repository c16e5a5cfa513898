//! Versioned schema migrations, applied in order, each in its own transaction. Never edit a
//! released migration: add a new one. The SQL here is plain ANSI (types and constraints
//! PostgreSQL accepts too).

pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "accounts, access keys, resource ownership, client tokens",
        r#"
CREATE TABLE accounts (
    id          BIGINT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);
CREATE TABLE access_keys (
    id          TEXT PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES accounts(id),
    secret      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('Active', 'Inactive')),
    created_at  TEXT NOT NULL
);
CREATE INDEX access_keys_by_account ON access_keys(account_id);
-- Every resource of every service, whatever its kind: who owns it and where it lives.
-- Service tables reference this row; ownership checks and tags go through it.
CREATE TABLE resources (
    id          TEXT PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES accounts(id),
    kind        TEXT NOT NULL,
    region_id   TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX resources_by_owner ON resources(account_id, kind, region_id, id);
-- ClientToken idempotency: the first answer to (account, action, token) is kept and
-- returned again for a repeat with the same parameters.
CREATE TABLE client_tokens (
    account_id  BIGINT NOT NULL,
    action      TEXT NOT NULL,
    token       TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    reply       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (account_id, action, token)
);
"#,
    ),
    (
        2,
        "VPC networking: vpcs, vswitches, route tables and entries, EIPs, tags",
        r#"
CREATE TABLE vpcs (
    id              TEXT PRIMARY KEY REFERENCES resources(id),
    account_id      BIGINT NOT NULL,
    region_id       TEXT NOT NULL,
    cidr_block      TEXT NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    status          TEXT NOT NULL,
    is_default      BOOLEAN NOT NULL,
    vrouter_id      TEXT NOT NULL,
    route_table_id  TEXT NOT NULL,
    user_cidrs      TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX vpcs_by_owner ON vpcs(account_id, region_id, id);
CREATE TABLE vswitches (
    id              TEXT PRIMARY KEY REFERENCES resources(id),
    account_id      BIGINT NOT NULL,
    region_id       TEXT NOT NULL,
    vpc_id          TEXT NOT NULL REFERENCES vpcs(id),
    zone_id         TEXT NOT NULL,
    cidr_block      TEXT NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    status          TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX vswitches_by_vpc ON vswitches(vpc_id, id);
CREATE INDEX vswitches_by_owner ON vswitches(account_id, region_id, id);
CREATE TABLE route_tables (
    id              TEXT PRIMARY KEY REFERENCES resources(id),
    account_id      BIGINT NOT NULL,
    region_id       TEXT NOT NULL,
    vpc_id          TEXT NOT NULL REFERENCES vpcs(id),
    vrouter_id      TEXT NOT NULL,
    kind            TEXT NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE TABLE route_entries (
    id              TEXT PRIMARY KEY,
    route_table_id  TEXT NOT NULL REFERENCES route_tables(id),
    account_id      BIGINT NOT NULL,
    destination     TEXT NOT NULL,
    next_hop_type   TEXT NOT NULL,
    next_hop_id     TEXT NOT NULL,
    kind            TEXT NOT NULL,
    status          TEXT NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    UNIQUE (route_table_id, destination)
);
CREATE TABLE eips (
    id                   TEXT PRIMARY KEY REFERENCES resources(id),
    account_id           BIGINT NOT NULL,
    region_id            TEXT NOT NULL,
    ip_address           TEXT NOT NULL UNIQUE,
    bandwidth            INTEGER NOT NULL,
    internet_charge_type TEXT NOT NULL,
    isp                  TEXT NOT NULL,
    name                 TEXT NOT NULL,
    description          TEXT NOT NULL,
    status               TEXT NOT NULL,
    instance_id          TEXT NOT NULL,
    instance_type        TEXT NOT NULL,
    private_ip           TEXT NOT NULL,
    created_at           TEXT NOT NULL
);
CREATE INDEX eips_by_owner ON eips(account_id, region_id, id);
-- Addresses taken in a vSwitch, by whatever holds them (a network interface).
CREATE TABLE private_ips (
    vswitch_id      TEXT NOT NULL REFERENCES vswitches(id),
    ip_address      TEXT NOT NULL,
    holder_id       TEXT NOT NULL,
    PRIMARY KEY (vswitch_id, ip_address)
);
-- Tags of any resource (TagResources and the Tag.N parameters of create calls).
CREATE TABLE tags (
    resource_id     TEXT NOT NULL REFERENCES resources(id),
    tag_key         TEXT NOT NULL,
    tag_value       TEXT NOT NULL,
    PRIMARY KEY (resource_id, tag_key)
);
CREATE INDEX tags_by_key ON tags(tag_key, tag_value);
"#,
    ),
    (
        3,
        "ECS: security groups and rules, key pairs, instances, network interfaces, disks",
        r#"
CREATE TABLE security_groups (
    id              TEXT PRIMARY KEY REFERENCES resources(id),
    account_id      BIGINT NOT NULL,
    region_id       TEXT NOT NULL,
    vpc_id          TEXT NOT NULL REFERENCES vpcs(id),
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    sg_type         TEXT NOT NULL,
    inner_policy    TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX security_groups_by_owner ON security_groups(account_id, region_id, id);
CREATE TABLE security_group_rules (
    id                          TEXT PRIMARY KEY,
    security_group_id           TEXT NOT NULL REFERENCES security_groups(id),
    direction                   TEXT NOT NULL,
    ip_protocol                 TEXT NOT NULL,
    port_range                  TEXT NOT NULL,
    source_port_range           TEXT NOT NULL,
    policy                      TEXT NOT NULL,
    priority                    INTEGER NOT NULL,
    nic_type                    TEXT NOT NULL,
    source_cidr                 TEXT NOT NULL,
    dest_cidr                   TEXT NOT NULL,
    source_group_id             TEXT NOT NULL,
    source_group_owner_account  TEXT NOT NULL,
    source_group_owner_id       TEXT NOT NULL,
    dest_group_id               TEXT NOT NULL,
    dest_group_owner_account    TEXT NOT NULL,
    dest_group_owner_id         TEXT NOT NULL,
    description                 TEXT NOT NULL,
    created_at                  TEXT NOT NULL
);
CREATE INDEX rules_by_group ON security_group_rules(security_group_id);
CREATE INDEX rules_by_source_group ON security_group_rules(source_group_id);
CREATE INDEX rules_by_dest_group ON security_group_rules(dest_group_id);
CREATE TABLE key_pairs (
    account_id      BIGINT NOT NULL,
    region_id       TEXT NOT NULL,
    name            TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    public_key      TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (account_id, region_id, name)
);
CREATE TABLE instances (
    id                      TEXT PRIMARY KEY REFERENCES resources(id),
    account_id              BIGINT NOT NULL,
    region_id               TEXT NOT NULL,
    zone_id                 TEXT NOT NULL,
    name                    TEXT NOT NULL,
    host_name               TEXT NOT NULL,
    description             TEXT NOT NULL,
    instance_type           TEXT NOT NULL,
    cpu                     INTEGER NOT NULL,
    memory_mib              INTEGER NOT NULL,
    image_id                TEXT NOT NULL,
    vpc_id                  TEXT NOT NULL,
    vswitch_id              TEXT NOT NULL,
    key_pair_name           TEXT NOT NULL,
    user_data               TEXT NOT NULL,
    status                  TEXT NOT NULL,
    desired                 TEXT NOT NULL,
    reboots                 INTEGER NOT NULL,
    internet_charge_type    TEXT NOT NULL,
    internet_bandwidth_out  INTEGER NOT NULL,
    public_ip               TEXT NOT NULL,
    deletion_protection     BOOLEAN NOT NULL,
    serial_number           TEXT NOT NULL,
    created_at              TEXT NOT NULL,
    started_at              TEXT NOT NULL
);
CREATE INDEX instances_by_owner ON instances(account_id, region_id, created_at, id);
CREATE TABLE network_interfaces (
    id              TEXT PRIMARY KEY REFERENCES resources(id),
    account_id      BIGINT NOT NULL,
    region_id       TEXT NOT NULL,
    zone_id         TEXT NOT NULL,
    vpc_id          TEXT NOT NULL,
    vswitch_id      TEXT NOT NULL REFERENCES vswitches(id),
    instance_id     TEXT NOT NULL,
    primary_ip      TEXT NOT NULL,
    mac             TEXT NOT NULL UNIQUE,
    created_at      TEXT NOT NULL
);
CREATE INDEX enis_by_instance ON network_interfaces(instance_id);
CREATE TABLE eni_security_groups (
    eni_id              TEXT NOT NULL REFERENCES network_interfaces(id),
    security_group_id   TEXT NOT NULL REFERENCES security_groups(id),
    position            INTEGER NOT NULL,
    PRIMARY KEY (eni_id, security_group_id)
);
CREATE INDEX members_by_group ON eni_security_groups(security_group_id);
CREATE TABLE disks (
    id                      TEXT PRIMARY KEY REFERENCES resources(id),
    account_id              BIGINT NOT NULL,
    region_id               TEXT NOT NULL,
    zone_id                 TEXT NOT NULL,
    instance_id             TEXT NOT NULL,
    name                    TEXT NOT NULL,
    description             TEXT NOT NULL,
    category                TEXT NOT NULL,
    size_gib                INTEGER NOT NULL,
    disk_type               TEXT NOT NULL,
    device                  TEXT NOT NULL,
    image_id                TEXT NOT NULL,
    status                  TEXT NOT NULL,
    delete_with_instance    BOOLEAN NOT NULL,
    created_at              TEXT NOT NULL
);
CREATE INDEX disks_by_owner ON disks(account_id, region_id, id);
CREATE INDEX disks_by_instance ON disks(instance_id);
"#,
    ),
    (
        4,
        "OSS: buckets",
        r#"
-- Bucket names are global across accounts, as on the real service.
CREATE TABLE buckets (
    name            TEXT PRIMARY KEY,
    account_id      BIGINT NOT NULL REFERENCES accounts(id),
    region_id       TEXT NOT NULL,
    acl             TEXT NOT NULL CHECK (acl IN ('private', 'public-read', 'public-read-write')),
    storage_class   TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX buckets_by_owner ON buckets(account_id, name);
"#,
    ),
    (
        5,
        "Pangu: the master's namespace (servers, files, chunks, replicas)",
        r#"
-- Chunkservers that ever registered; their liveness is the master's, in memory (heartbeats).
CREATE TABLE pangu_servers (
    id              INTEGER PRIMARY KEY,
    addr            TEXT NOT NULL,
    rack            TEXT NOT NULL,
    registered_at   TEXT NOT NULL
);
-- Append-only files. `sealed_len` is set once the file is sealed.
-- AUTOINCREMENT: an id is never reused, so a replica left on a server that was away when
-- its file was deleted can never be mistaken for a newer chunk.
CREATE TABLE pangu_files (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    replication     INTEGER NOT NULL,
    sealed_len      BIGINT,
    created_at      TEXT NOT NULL
);
-- A file's chunks, in order: chunk `seq` holds the file's bytes from `file_offset`.
-- `sealed_len` is set once the chunk is sealed (its length then never changes).
CREATE TABLE pangu_chunks (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id         BIGINT NOT NULL REFERENCES pangu_files(id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    file_offset     BIGINT NOT NULL,
    max_size        BIGINT NOT NULL,
    sealed_len      BIGINT,
    UNIQUE (file_id, seq)
);
-- Where each chunk's replicas are; `healthy` is false once a corruption was reported.
CREATE TABLE pangu_replicas (
    chunk_id        BIGINT NOT NULL REFERENCES pangu_chunks(id) ON DELETE CASCADE,
    server_id       BIGINT NOT NULL REFERENCES pangu_servers(id),
    healthy         BOOLEAN NOT NULL,
    PRIMARY KEY (chunk_id, server_id)
);
-- Chunks of deleted files whose replicas may still be on disk: the master deletes them
-- from their servers and then forgets them.
CREATE TABLE pangu_garbage (
    chunk_id        BIGINT NOT NULL,
    server_id       BIGINT NOT NULL,
    PRIMARY KEY (chunk_id, server_id)
);
"#,
    ),
    (
        6,
        "OSS: objects, multipart uploads and parts, and the extents holding their bytes",
        r#"
-- One row per (bucket, key). Keys compare bytewise (SQLite's BINARY collation; a
-- PostgreSQL backend needs COLLATE "C"), which is UTF-8 order, the order OSS lists in.
-- Sizes, CRC-64s (their bits) and times (milliseconds since the epoch) are 64-bit integers.
CREATE TABLE oss_objects (
    id                  INTEGER PRIMARY KEY,
    bucket              TEXT NOT NULL REFERENCES buckets(name),
    object_key          TEXT NOT NULL,
    size                BIGINT NOT NULL,
    etag                TEXT NOT NULL,
    crc64               BIGINT NOT NULL,
    object_type         TEXT NOT NULL CHECK (object_type IN ('Normal', 'Multipart', 'Appendable')),
    content_type        TEXT NOT NULL,
    cache_control       TEXT,
    content_disposition TEXT,
    content_encoding    TEXT,
    content_language    TEXT,
    expires             TEXT,
    user_meta           TEXT NOT NULL,
    acl                 TEXT NOT NULL CHECK (acl IN ('default', 'private', 'public-read', 'public-read-write')),
    storage_class       TEXT NOT NULL,
    last_modified_ms    BIGINT NOT NULL,
    UNIQUE (bucket, object_key)
);
-- Multipart uploads in progress, with the headers given at InitiateMultipartUpload (they
-- become the object's). Upload ids sort in creation order.
CREATE TABLE oss_uploads (
    upload_id           TEXT PRIMARY KEY,
    bucket              TEXT NOT NULL REFERENCES buckets(name),
    object_key          TEXT NOT NULL,
    content_type        TEXT NOT NULL,
    cache_control       TEXT,
    content_disposition TEXT,
    content_encoding    TEXT,
    content_language    TEXT,
    expires             TEXT,
    user_meta           TEXT NOT NULL,
    acl                 TEXT NOT NULL CHECK (acl IN ('default', 'private', 'public-read', 'public-read-write')),
    storage_class       TEXT NOT NULL,
    initiated_ms        BIGINT NOT NULL
);
CREATE INDEX oss_uploads_by_key ON oss_uploads(bucket, object_key, upload_id);
CREATE TABLE oss_parts (
    id                  INTEGER PRIMARY KEY,
    upload_id           TEXT NOT NULL REFERENCES oss_uploads(upload_id),
    part_number         INTEGER NOT NULL,
    size                BIGINT NOT NULL,
    etag                TEXT NOT NULL,
    crc64               BIGINT NOT NULL,
    last_modified_ms    BIGINT NOT NULL,
    UNIQUE (upload_id, part_number)
);
-- Where the bytes are: runs of Pangu files, owned by exactly one object or one part, in
-- `seq` order. Completing an upload moves its parts' extents to the object (no copy).
CREATE TABLE oss_extents (
    id                  INTEGER PRIMARY KEY,
    object_id           BIGINT REFERENCES oss_objects(id),
    part_id             BIGINT REFERENCES oss_parts(id),
    seq                 INTEGER NOT NULL,
    file                BIGINT NOT NULL,
    file_offset         BIGINT NOT NULL,
    len                 BIGINT NOT NULL,
    CHECK ((object_id IS NULL) <> (part_id IS NULL))
);
CREATE INDEX oss_extents_by_object ON oss_extents(object_id, seq);
CREATE INDEX oss_extents_by_part ON oss_extents(part_id, seq);
CREATE INDEX oss_extents_by_file ON oss_extents(file);
"#,
    ),
    (
        7,
        "ECS: instance system events",
        r#"
-- What happened to an instance that nobody asked for (DescribeInstanceHistoryEvents), e.g.
-- its guest's process ended on its own: SystemFailure.Stop.
CREATE TABLE instance_events (
    id              TEXT PRIMARY KEY,
    account_id      BIGINT NOT NULL,
    region_id       TEXT NOT NULL,
    instance_id     TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    cycle_status    TEXT NOT NULL,
    reason          TEXT NOT NULL,
    publish_time    TEXT NOT NULL,
    finish_time     TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX instance_events_by_owner ON instance_events(account_id, region_id, created_at);
"#,
    ),
    (
        8,
        "ECS: forced stops",
        r#"
-- Instances whose pending stop (or reboot) was asked with ForceStop/ForceReboot: the agent
-- powers them off instead of asking the guest. A row lives until that stop is done.
CREATE TABLE instance_forced_stops (
    instance_id     TEXT PRIMARY KEY
);
"#,
    ),
    (
        9,
        "ClientToken expiry",
        r#"
-- A ClientToken is remembered for a limited time (client_token.rs); this index finds the
-- oldest rows for the bounded sweep that each idempotent write does.
CREATE INDEX client_tokens_by_age ON client_tokens(created_at);
"#,
    ),
    (
        10,
        "Quotas: per-account overrides",
        r#"
-- An account's own limit for a quota (quota.rs); a quota without a row takes the
-- deployment's default ([quotas] in the configuration file).
CREATE TABLE account_quotas (
    account_id      BIGINT NOT NULL,
    name            TEXT NOT NULL,
    value           BIGINT NOT NULL CHECK (value >= 0),
    PRIMARY KEY (account_id, name)
);
"#,
    ),
    (
        11,
        "OSS: bucket generations (a bucket's identity beyond its name)",
        r#"
-- A bucket name can be deleted and created again, by another account; a write authorized
-- against the old bucket must not commit into the new one. Each bucket gets a generation
-- when it is created, from a counter that never goes back (a MAX()+1 would hand a deleted
-- bucket's generation to its successor). Buckets made before this migration keep 0.
CREATE TABLE oss_bucket_generation (
    next            BIGINT NOT NULL
);
INSERT INTO oss_bucket_generation (next) VALUES (1);
ALTER TABLE buckets ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
"#,
    ),
    (
        12,
        "OSS: a bucket's storage capacity and the bytes it holds",
        r#"
-- The owner's limit on the bucket's bytes (PutBucketStorageCapacity, `?qos`), in GB as OSS
-- counts them (2^30 bytes); -1 is no limit. `used_bytes` is the sum of the sizes of the
-- bucket's objects and of the parts of its uploads in progress, kept by every write in
-- the write's own transaction (bucket.rs), so a commit knows the room left without a SUM.
ALTER TABLE buckets ADD COLUMN storage_capacity BIGINT NOT NULL DEFAULT -1 CHECK (storage_capacity >= -1);
ALTER TABLE buckets ADD COLUMN used_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE buckets SET used_bytes =
    (SELECT COALESCE(SUM(o.size), 0) FROM oss_objects o WHERE o.bucket = buckets.name)
  + (SELECT COALESCE(SUM(p.size), 0) FROM oss_parts p JOIN oss_uploads u ON u.upload_id = p.upload_id
      WHERE u.bucket = buckets.name);
"#,
    ),
    (
        13,
        "Pangu: volumes (the roots of cloud disks' random-access files) and their files",
        r#"
-- A volume is a block device kept as a log of Pangu files (docs/disks.md): its size, its
-- writer's epoch (bumped by each acquire: every mutation carries it, so a stale writer is
-- refused), an optional frozen parent it is a copy-on-write clone of, whether it is frozen,
-- the current checkpoint (file and the log position it covers), and the next segment
-- number (a counter, so a dropped segment's number is never given again).
CREATE TABLE pangu_volumes (
    name                TEXT PRIMARY KEY,
    size_bytes          BIGINT NOT NULL CHECK (size_bytes > 0),
    epoch               BIGINT NOT NULL,
    parent              TEXT REFERENCES pangu_volumes(name),
    frozen              BOOLEAN NOT NULL,
    checkpoint_file     BIGINT REFERENCES pangu_files(id),
    checkpoint_seq      BIGINT,
    checkpoint_offset   BIGINT,
    next_seq            BIGINT NOT NULL,
    created_at          TEXT NOT NULL
);
CREATE INDEX pangu_volumes_by_parent ON pangu_volumes(parent);
-- The Pangu files a volume owns: its log segments (in `seq` order) and its checkpoint
-- files (the current one and any a crash left behind), with the epoch that created each.
-- A file's deletion takes its row with it.
CREATE TABLE pangu_volume_files (
    file_id             BIGINT PRIMARY KEY REFERENCES pangu_files(id) ON DELETE CASCADE,
    volume              TEXT NOT NULL REFERENCES pangu_volumes(name) ON DELETE CASCADE,
    kind                TEXT NOT NULL CHECK (kind IN ('segment', 'checkpoint')),
    seq                 BIGINT,
    epoch               BIGINT NOT NULL,
    CHECK ((kind = 'segment') = (seq IS NOT NULL)),
    UNIQUE (volume, seq)
);
"#,
    ),
    (
        14,
        "ECS: disks of their own (create, attach, resize, re-initialise) and their volumes",
        r#"
-- What the API shows of a disk beyond its first columns. Disks made before this migration
-- are system disks: not portable.
ALTER TABLE disks ADD COLUMN performance_level TEXT NOT NULL DEFAULT '';
ALTER TABLE disks ADD COLUMN portable BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE disks ADD COLUMN delete_auto_snapshot BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE disks ADD COLUMN enable_auto_snapshot BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE disks ADD COLUMN attached_at TEXT NOT NULL DEFAULT '';
ALTER TABLE disks ADD COLUMN detached_at TEXT NOT NULL DEFAULT '';
UPDATE disks SET performance_level = 'PL1' WHERE category = 'cloud_essd';
UPDATE disks SET attached_at = created_at WHERE instance_id <> '';
CREATE INDEX disks_by_status ON disks(status);
-- The host's progress on each disk's volume: the size it last reported it at. No row: the
-- volume is not made yet. Kept apart from `disks` so the host never rewrites the API's row.
CREATE TABLE disk_volumes (
    disk_id         TEXT PRIMARY KEY,
    gib             BIGINT NOT NULL
);
-- A deleted disk's row goes at once; its volume is deleted by the host, which learns of it
-- here and removes the row when done (so a crash in between deletes it on the next pass).
CREATE TABLE disk_volume_deletions (
    volume          TEXT PRIMARY KEY,
    deleted_at      TEXT NOT NULL
);
"#,
    ),
    (
        15,
        "Pangu: pins, a volume's contents held at one instant for a snapshot",
        r#"
-- A volume's files gain a third kind, `pin` (docs/snapshots.md, "Pins and compaction"): an
-- index copy in checkpoint format, named by the snapshot id it holds the blocks of
-- (`name`, unique per volume), with the log's next sequence number and the volume's size at
-- the instant. A pin file is made as a checkpoint file and becomes a pin when registered,
-- so a crash before that leaves a stray checkpoint file that the next acquire deletes.
-- SQL cannot widen a CHECK in place: the table is made again with the new columns, its
-- rows copied.
CREATE TABLE pangu_volume_files_v15 (
    file_id             BIGINT PRIMARY KEY REFERENCES pangu_files(id) ON DELETE CASCADE,
    volume              TEXT NOT NULL REFERENCES pangu_volumes(name) ON DELETE CASCADE,
    kind                TEXT NOT NULL CHECK (kind IN ('segment', 'checkpoint', 'pin')),
    seq                 BIGINT,
    epoch               BIGINT NOT NULL,
    name                TEXT,
    pin_next_seq        BIGINT CHECK (pin_next_seq >= 0),
    pin_size_bytes      BIGINT CHECK (pin_size_bytes > 0),
    CHECK ((kind = 'segment') = (seq IS NOT NULL)),
    CHECK ((kind = 'pin') = (name IS NOT NULL)),
    CHECK ((kind = 'pin') = (pin_next_seq IS NOT NULL AND pin_size_bytes IS NOT NULL)),
    UNIQUE (volume, seq),
    UNIQUE (volume, name)
);
INSERT INTO pangu_volume_files_v15 (file_id, volume, kind, seq, epoch)
    SELECT file_id, volume, kind, seq, epoch FROM pangu_volume_files;
DROP TABLE pangu_volume_files;
ALTER TABLE pangu_volume_files_v15 RENAME TO pangu_volume_files;
"#,
    ),
    (
        16,
        "ECS: snapshots, their manifests (range -> block), block reference counts, pins to release",
        r#"
-- A disk's snapshot (docs/snapshots.md). `created_at` is when the row was recorded;
-- `creation_time` is the instant the host pinned (the API's CreationTime; the record time
-- until the pin is reported). `base_id`/`base_next_seq`: the snapshot this one is
-- incremental to and its pin's next sequence (NULL: a full snapshot). `pin_next_seq` and
-- `pin_size_bytes`: what the host's pin holds (NULL until pinned). `chainable`: whether a
-- later snapshot of the disk may use this one as its base (false once the disk's volume was
-- made anew, whose change sequences start over). `disks_created`/`images_created`: how many
-- disks and images were made from it (the hooks of SnapshotCreatedDisk/Image).
CREATE TABLE snapshots (
    id                  TEXT PRIMARY KEY,
    account_id          BIGINT NOT NULL,
    region_id           TEXT NOT NULL,
    disk_id             TEXT NOT NULL,
    source_disk_gib     BIGINT NOT NULL,
    source_disk_type    TEXT NOT NULL,
    source_category     TEXT NOT NULL,
    name                TEXT NOT NULL,
    description         TEXT NOT NULL,
    snapshot_type       TEXT NOT NULL,
    status              TEXT NOT NULL,
    progress            BIGINT NOT NULL,
    failure             TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    creation_time       TEXT NOT NULL,
    modified_at         TEXT NOT NULL,
    retention_days      BIGINT,
    link_id             TEXT NOT NULL,
    base_id             TEXT,
    base_next_seq       BIGINT,
    pin_next_seq        BIGINT,
    pin_size_bytes      BIGINT,
    chainable           BOOLEAN NOT NULL,
    read_bytes          BIGINT NOT NULL,
    stored_bytes        BIGINT NOT NULL,
    usage               TEXT NOT NULL,
    disks_created       BIGINT NOT NULL,
    images_created      BIGINT NOT NULL
);
CREATE INDEX snapshots_by_owner ON snapshots(account_id, region_id, id);
CREATE INDEX snapshots_by_disk ON snapshots(disk_id, status);
CREATE INDEX snapshots_by_status ON snapshots(status);
-- A snapshot's contents: for each range (1 MiB) holding data, its block object's hash.
-- Written once, in the transaction that makes the snapshot `accomplished`.
CREATE TABLE snapshot_ranges (
    snapshot_id         TEXT NOT NULL,
    range_index         BIGINT NOT NULL,
    block               TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, range_index)
);
-- Every block object of the region's system bucket that a row names or named: how many
-- manifest rows name it, its size, and when its count reached zero (NULL while named).
-- `sweeping`: the sweeper has started deleting the object; a commit naming it is refused
-- until the sweeper forgets the row (the uploader then stores it again).
CREATE TABLE snapshot_blocks (
    hash                TEXT PRIMARY KEY,
    refs                BIGINT NOT NULL CHECK (refs >= 0),
    bytes               BIGINT NOT NULL,
    dead_at             TEXT,
    sweeping            BOOLEAN NOT NULL
);
CREATE INDEX snapshot_blocks_dead ON snapshot_blocks(refs, dead_at);
-- Pins the host must release (the snapshot committed, failed or was deleted); the row goes
-- when the host reports the release.
CREATE TABLE snapshot_pin_releases (
    snapshot_id         TEXT PRIMARY KEY,
    volume              TEXT NOT NULL,
    queued_at           TEXT NOT NULL
);
"#,
    ),
    (
        17,
        "snapshots: the blocks an upload claimed (references held until it commits or ends)",
        r#"
-- A block an upload in progress names: one reference on it for the snapshot, taken before
-- the host looks for the object, dropped when the snapshot commits (its manifest then holds
-- the references), fails or is deleted. So the sweeper never deletes an object an upload
-- found and skipped storing (docs/snapshots.md, "Claims").
CREATE TABLE snapshot_claims (
    snapshot_id         TEXT NOT NULL,
    hash                TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, hash)
);
"#,
    ),
    (
        18,
        "automatic snapshot policies and the disks they apply to",
        r#"
-- An automatic snapshot policy: when it fires (hours and weekdays in UTC+8, as JSON arrays
-- of strings, the API's spelling), how long its snapshots are kept (NULL: forever, the
-- API's -1), the cross-region fields as given (feitian has one region per store), and the
-- scheduler's progress: `checked_at` is the end of the last window it looked at.
CREATE TABLE auto_snapshot_policies (
    id                      TEXT PRIMARY KEY REFERENCES resources(id),
    account_id              BIGINT NOT NULL,
    region_id               TEXT NOT NULL,
    name                    TEXT NOT NULL,
    time_points             TEXT NOT NULL,
    repeat_weekdays         TEXT NOT NULL,
    retention_days          BIGINT,
    enable_cross_region_copy BOOLEAN NOT NULL,
    target_copy_regions     TEXT NOT NULL,
    copied_retention_days   BIGINT,
    created_at              TEXT NOT NULL,
    checked_at              TEXT NOT NULL
);
CREATE INDEX auto_snapshot_policies_by_owner ON auto_snapshot_policies(account_id, region_id, id);
-- The policy a disk follows: one per disk (applying another replaces it, as on Alibaba).
CREATE TABLE auto_snapshot_policy_disks (
    disk_id                 TEXT PRIMARY KEY,
    policy_id               TEXT NOT NULL,
    applied_at              TEXT NOT NULL
);
CREATE INDEX auto_snapshot_policy_disks_by_policy ON auto_snapshot_policy_disks(policy_id);
"#,
    ),
    (
        19,
        "disks made from snapshots: their source, and the blocks held until the volume is filled",
        r#"
-- The snapshot a disk was made from (DescribeDisks' SourceSnapshotId).
CREATE TABLE disk_sources (
    disk_id             TEXT PRIMARY KEY,
    snapshot_id         TEXT NOT NULL
);
-- What a disk being made from a snapshot is filled with: the snapshot's manifest when the
-- disk was created, one reference per row on its block (docs/snapshots.md guarantee 6), so
-- deleting the snapshot meanwhile frees nothing the fill still reads. The rows and their
-- references go when the host reports the volume ready, or when the disk is deleted.
-- (ResetDisk fills an existing disk the same way, from one of its own snapshots.)
CREATE TABLE disk_restores (
    disk_id             TEXT NOT NULL,
    range_index         BIGINT NOT NULL CHECK (range_index >= 0),
    hash                TEXT NOT NULL,
    snapshot_id         TEXT NOT NULL,
    PRIMARY KEY (disk_id, range_index)
);
"#,
    ),
    (
        20,
        "custom images: their disks (snapshots), and the accounts they are shared with",
        r#"
-- A custom image (docs/snapshots.md guarantee 7: an image is snapshots with a name). Its
-- bytes are its disks' snapshots, which it keeps from deletion (`images_created` on the
-- snapshot); it is `Creating` while one of them progresses, `Available` once all are
-- accomplished, `CreateFailed` if one failed. `base_image`: the public image its system disk
-- descends from (its OS names), '' when unknown. `copied_from`: the source image of a copy.
CREATE TABLE images (
    id                      TEXT PRIMARY KEY REFERENCES resources(id),
    account_id              BIGINT NOT NULL,
    region_id               TEXT NOT NULL,
    name                    TEXT NOT NULL,
    description             TEXT NOT NULL,
    version                 TEXT NOT NULL,
    family                  TEXT NOT NULL,
    platform                TEXT NOT NULL,
    os_type                 TEXT NOT NULL,
    os_name                 TEXT NOT NULL,
    os_name_en              TEXT NOT NULL,
    architecture            TEXT NOT NULL,
    boot_mode               TEXT NOT NULL,
    size_gib                BIGINT NOT NULL,
    status                  TEXT NOT NULL,
    failure                 TEXT NOT NULL,
    source_instance_id      TEXT NOT NULL,
    base_image              TEXT NOT NULL,
    copied_from             TEXT NOT NULL,
    copied_from_region      TEXT NOT NULL,
    created_at              TEXT NOT NULL,
    modified_at             TEXT NOT NULL
);
CREATE UNIQUE INDEX images_by_name ON images(account_id, region_id, name);
-- An image's disks (`DiskDeviceMappings`): one snapshot each, the system disk at /dev/xvda.
CREATE TABLE image_disks (
    image_id                TEXT NOT NULL,
    device                  TEXT NOT NULL,
    disk_type               TEXT NOT NULL,
    snapshot_id             TEXT NOT NULL,
    size_gib                BIGINT NOT NULL,
    PRIMARY KEY (image_id, device)
);
CREATE INDEX image_disks_by_snapshot ON image_disks(snapshot_id);
-- The accounts an image is shared with (`ModifyImageSharePermission`).
CREATE TABLE image_shares (
    image_id                TEXT NOT NULL,
    account_id              BIGINT NOT NULL,
    shared_at               TEXT NOT NULL,
    PRIMARY KEY (image_id, account_id)
);
CREATE INDEX image_shares_by_account ON image_shares(account_id);
"#,
    ),
    (
        21,
        "image import and export tasks, and the objects an import reads",
        r#"
-- An ImportImage or ExportImage task (docs/snapshots.md, "Image import and export"):
-- `Processing` until the control plane's worker finishes it (`Finished`), fails it (`Failed`,
-- with the reason) or the caller cancels it (`Cancelled`). An export writes `object` into
-- `bucket` as `format`; an import's sources are `image_import_sources`.
CREATE TABLE image_tasks (
    id                      TEXT PRIMARY KEY REFERENCES resources(id),
    account_id              BIGINT NOT NULL,
    region_id               TEXT NOT NULL,
    action                  TEXT NOT NULL,
    status                  TEXT NOT NULL,
    progress                BIGINT NOT NULL,
    image_id                TEXT NOT NULL,
    failure                 TEXT NOT NULL,
    bucket                  TEXT NOT NULL,
    object                  TEXT NOT NULL,
    format                  TEXT NOT NULL,
    created_at              TEXT NOT NULL,
    finished_at             TEXT NOT NULL
);
CREATE INDEX image_tasks_by_status ON image_tasks(status, created_at);
-- What each snapshot of an import is made from: an object of the caller's, in a format,
-- and the disk's size (GiB; 0: the file's own size, rounded up).
CREATE TABLE image_import_sources (
    snapshot_id             TEXT PRIMARY KEY,
    task_id                 TEXT NOT NULL,
    device                  TEXT NOT NULL,
    bucket                  TEXT NOT NULL,
    object                  TEXT NOT NULL,
    format                  TEXT NOT NULL,
    size_gib                BIGINT NOT NULL
);
CREATE INDEX image_import_sources_by_task ON image_import_sources(task_id);
"#,
    ),
];
