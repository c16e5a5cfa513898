//! Custom images (tables `images`, `image_disks`, `image_shares`; docs/snapshots.md
//! guarantee 7): an image is its disks' snapshots with a name.
//!
//! - An image names one snapshot per disk (`DiskDeviceMappings`), the system disk's at
//!   `/dev/xvda`. It keeps each from deletion (`images_created`, [`snapshot::note_use`]), and
//!   so keeps their blocks: an image holds no block references of its own.
//! - It is `Creating` while one of its snapshots progresses (CreateImage from an instance
//!   snapshots every disk first), `Available` once every one is accomplished, `CreateFailed`
//!   when one failed or went. [`settle`] moves it, in the transaction that records the
//!   snapshot's end, so an image is never `Available` with a snapshot that is not.
//! - Sharing: an account an image is shared with sees it as `others` and may launch from it;
//!   only the owner changes or deletes it.
//!
//! Names are unique per account and region (`InvalidImageName.Duplicated`), whatever the
//! status.

use crate::disk::DiskType;
use crate::query::all;
use crate::quota::{self, Quota, Quotas};
use crate::resource::forget_resource;
use crate::snapshot::{self, SnapshotStatus};
use crate::status::{column, status_enum};
use crate::MetaError;
use rusqlite::{params, OptionalExtension, Row, Transaction};

status_enum! {
    /// An image's `Status` (the API's spellings).
    pub enum ImageStatus as "image status" {
        Creating = "Creating",
        Available = "Available",
        CreateFailed = "CreateFailed",
        UnAvailable = "UnAvailable",
        Deprecated = "Deprecated",
    }
}

/// Whether `id` names a custom image (the registry's `m-` ids; public images are named
/// `…_alibase_….vhd`).
pub fn is_custom_id(id: &str) -> bool {
    id.starts_with("m-")
}

/// One image row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: String,
    pub account_id: u64,
    pub region_id: String,
    pub name: String,
    pub description: String,
    pub version: String,
    pub family: String,
    pub platform: String,
    pub os_type: String,
    pub os_name: String,
    pub os_name_en: String,
    pub architecture: String,
    pub boot_mode: String,
    /// The system disk's size (the API's `Size`), GiB.
    pub size_gib: i64,
    pub status: ImageStatus,
    /// Why it is `CreateFailed`; empty otherwise.
    pub failure: String,
    /// The instance it was made from; empty otherwise.
    pub source_instance_id: String,
    /// The public image its system disk descends from; empty when unknown.
    pub base_image: String,
    /// For a copy: the source image and its region; empty otherwise.
    pub copied_from: String,
    pub copied_from_region: String,
    pub created_at: String,
    pub modified_at: String,
}

impl Image {
    /// A new image of `account_id` in `region_id` named `name`, at `at`, in `status`: an
    /// x86_64 Linux of unknown distribution booting BIOS-style, 0 GiB, made from nothing in
    /// particular (the caller sets what it knows).
    pub fn new(id: &str, account_id: u64, region_id: &str, name: &str, status: ImageStatus, at: &str) -> Image {
        Image {
            id: id.to_owned(),
            account_id,
            region_id: region_id.to_owned(),
            name: name.to_owned(),
            description: String::new(),
            version: String::new(),
            family: String::new(),
            platform: "Others Linux".into(),
            os_type: "linux".into(),
            os_name: "Others Linux 64位".into(),
            os_name_en: "Others Linux 64 bit".into(),
            architecture: "x86_64".into(),
            boot_mode: "BIOS".into(),
            size_gib: 0,
            status,
            failure: String::new(),
            source_instance_id: String::new(),
            base_image: String::new(),
            copied_from: String::new(),
            copied_from_region: String::new(),
            created_at: at.to_owned(),
            modified_at: at.to_owned(),
        }
    }
}

/// One of an image's disks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDisk {
    /// `/dev/xvda` for the system disk, `/dev/xvdb`… for data disks.
    pub device: String,
    pub disk_type: DiskType,
    pub snapshot_id: String,
    pub size_gib: i64,
}

const COLS: &str = "id, account_id, region_id, name, description, version, family, platform, os_type, os_name, os_name_en, architecture, boot_mode, size_gib, status, failure, source_instance_id, base_image, copied_from, copied_from_region, created_at, modified_at";

fn row(r: &Row<'_>) -> rusqlite::Result<Image> {
    Ok(Image {
        id: r.get(0)?,
        account_id: r.get::<_, i64>(1)?.max(0) as u64,
        region_id: r.get(2)?,
        name: r.get(3)?,
        description: r.get(4)?,
        version: r.get(5)?,
        family: r.get(6)?,
        platform: r.get(7)?,
        os_type: r.get(8)?,
        os_name: r.get(9)?,
        os_name_en: r.get(10)?,
        architecture: r.get(11)?,
        boot_mode: r.get(12)?,
        size_gib: r.get(13)?,
        status: column(r, 14, "image status", ImageStatus::parse)?,
        failure: r.get(15)?,
        source_instance_id: r.get(16)?,
        base_image: r.get(17)?,
        copied_from: r.get(18)?,
        copied_from_region: r.get(19)?,
        created_at: r.get(20)?,
        modified_at: r.get(21)?,
    })
}

/// Why an image cannot be recorded.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("the account may hold {max} images in the region and holds {held}")]
    QuotaExceeded { max: u64, held: u64 },
    /// The account has an image of that name in the region (`InvalidImageName.Duplicated`).
    #[error("an image named {0:?} exists")]
    NameTaken(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

impl From<rusqlite::Error> for CreateError {
    fn from(e: rusqlite::Error) -> Self {
        CreateError::Meta(e.into())
    }
}

/// How many images an account holds in a region (the `images` quota).
pub fn count(tx: &Transaction<'_>, account_id: u64, region_id: &str) -> Result<u64, MetaError> {
    let n: i64 = tx.query_row(
        "SELECT COUNT(*) FROM images WHERE account_id = ?1 AND region_id = ?2",
        params![account_id as i64, region_id],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

/// Whether the account has an image named `name` in the region.
pub fn name_taken(tx: &Transaction<'_>, account_id: u64, region_id: &str, name: &str) -> Result<bool, MetaError> {
    Ok(tx
        .query_row(
            "SELECT 1 FROM images WHERE account_id = ?1 AND region_id = ?2 AND name = ?3",
            params![account_id as i64, region_id, name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Records an image and its disks in the caller's transaction (its id registered there
/// too): checks the `images` quota and the name, and keeps each disk's snapshot from
/// deletion. Its status is as given (`Creating` while a snapshot progresses; see [`settle`]).
pub fn create(tx: &Transaction<'_>, quotas: &Quotas, image: &Image, disks: &[ImageDisk]) -> Result<(), CreateError> {
    let held = count(tx, image.account_id, &image.region_id)?;
    let max = quota::limit(tx, quotas, image.account_id, Quota::Images)?;
    if !quota::fits(max, held, 1) {
        return Err(CreateError::QuotaExceeded { max, held });
    }
    if name_taken(tx, image.account_id, &image.region_id, &image.name)? {
        return Err(CreateError::NameTaken(image.name.clone()));
    }
    let i = image;
    tx.execute(
        &format!(
            "INSERT INTO images ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)"
        ),
        params![
            i.id,
            i.account_id as i64,
            i.region_id,
            i.name,
            i.description,
            i.version,
            i.family,
            i.platform,
            i.os_type,
            i.os_name,
            i.os_name_en,
            i.architecture,
            i.boot_mode,
            i.size_gib,
            i.status.as_str(),
            i.failure,
            i.source_instance_id,
            i.base_image,
            i.copied_from,
            i.copied_from_region,
            i.created_at,
            i.modified_at,
        ],
    )?;
    for d in disks {
        tx.execute(
            "INSERT INTO image_disks (image_id, device, disk_type, snapshot_id, size_gib) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![i.id, d.device, d.disk_type, d.snapshot_id, d.size_gib],
        )?;
        snapshot::note_use(tx, &d.snapshot_id, 0, 1)?;
    }
    Ok(())
}

/// An image by id, whoever owns it.
pub fn get(tx: &Transaction<'_>, id: &str) -> Result<Option<Image>, MetaError> {
    Ok(tx.query_row(&format!("SELECT {COLS} FROM images WHERE id = ?1"), [id], row).optional()?)
}

/// An image's disks, the system disk first, then by device.
pub fn disks(tx: &Transaction<'_>, image_id: &str) -> Result<Vec<ImageDisk>, MetaError> {
    all(
        tx,
        "SELECT device, disk_type, snapshot_id, size_gib FROM image_disks WHERE image_id = ?1
         ORDER BY disk_type = 'data', device",
        [image_id],
        |r| Ok(ImageDisk { device: r.get(0)?, disk_type: r.get(1)?, snapshot_id: r.get(2)?, size_gib: r.get(3)? }),
    )
}

/// Whether the image is shared with `account_id`.
pub fn shared_with(tx: &Transaction<'_>, image_id: &str, account_id: u64) -> Result<bool, MetaError> {
    Ok(tx
        .query_row(
            "SELECT 1 FROM image_shares WHERE image_id = ?1 AND account_id = ?2",
            params![image_id, account_id as i64],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The image if `account_id` may use it: its own, or shared with it.
pub fn visible_to(tx: &Transaction<'_>, account_id: u64, id: &str) -> Result<Option<Image>, MetaError> {
    match get(tx, id)? {
        Some(i) if i.account_id == account_id || shared_with(tx, id, account_id)? => Ok(Some(i)),
        _ => Ok(None),
    }
}

/// Every image `account_id` sees in a region: its own (`self`), then those shared with it
/// (`others`), each in creation order.
pub fn visible(tx: &Transaction<'_>, account_id: u64, region_id: &str) -> Result<Vec<Image>, MetaError> {
    let mut out = all(
        tx,
        &format!("SELECT {COLS} FROM images WHERE account_id = ?1 AND region_id = ?2 ORDER BY created_at, id"),
        params![account_id as i64, region_id],
        row,
    )?;
    out.extend(all(
        tx,
        &format!(
            "SELECT {COLS} FROM images WHERE region_id = ?2 AND account_id <> ?1
               AND id IN (SELECT image_id FROM image_shares WHERE account_id = ?1)
             ORDER BY created_at, id"
        ),
        params![account_id as i64, region_id],
        row,
    )?);
    Ok(out)
}

/// Writes what `ModifyImageAttribute` may change.
pub fn update(tx: &Transaction<'_>, i: &Image) -> Result<(), MetaError> {
    tx.execute(
        "UPDATE images SET name = ?2, description = ?3, family = ?4, boot_mode = ?5, status = ?6, modified_at = ?7
         WHERE id = ?1",
        params![i.id, i.name, i.description, i.family, i.boot_mode, i.status.as_str(), i.modified_at],
    )?;
    Ok(())
}

/// How many instances (of any account) were launched from the image and still exist.
pub fn instances_using(tx: &Transaction<'_>, image_id: &str) -> Result<u64, MetaError> {
    let n: i64 = tx.query_row("SELECT COUNT(*) FROM instances WHERE image_id = ?1", [image_id], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// Deletes an image: its rows, shares, tags and registry entry; its snapshots stay (as on
/// Alibaba Cloud) and are free to be deleted again. `false` if there was none.
pub fn delete(tx: &Transaction<'_>, id: &str) -> Result<bool, MetaError> {
    if get(tx, id)?.is_none() {
        return Ok(false);
    }
    for d in disks(tx, id)? {
        snapshot::note_use(tx, &d.snapshot_id, 0, -1)?;
    }
    tx.execute("DELETE FROM image_disks WHERE image_id = ?1", [id])?;
    tx.execute("DELETE FROM image_shares WHERE image_id = ?1", [id])?;
    tx.execute("DELETE FROM images WHERE id = ?1", [id])?;
    forget_resource(tx, id)?;
    Ok(true)
}

/// Shares the image with an account (again: no change).
pub fn share(tx: &Transaction<'_>, image_id: &str, account_id: u64, at: &str) -> Result<(), MetaError> {
    tx.execute(
        "INSERT INTO image_shares (image_id, account_id, shared_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (image_id, account_id) DO NOTHING",
        params![image_id, account_id as i64, at],
    )?;
    Ok(())
}

/// Stops sharing the image with an account (not shared: no change).
pub fn unshare(tx: &Transaction<'_>, image_id: &str, account_id: u64) -> Result<(), MetaError> {
    tx.execute(
        "DELETE FROM image_shares WHERE image_id = ?1 AND account_id = ?2",
        params![image_id, account_id as i64],
    )?;
    Ok(())
}

/// The accounts the image is shared with, and since when, in sharing order.
pub fn shares(tx: &Transaction<'_>, image_id: &str) -> Result<Vec<(u64, String)>, MetaError> {
    all(
        tx,
        "SELECT account_id, shared_at FROM image_shares WHERE image_id = ?1 ORDER BY shared_at, account_id",
        [image_id],
        |r| Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get(1)?)),
    )
}

/// Whether the image is shared with anyone.
pub fn is_shared(tx: &Transaction<'_>, image_id: &str) -> Result<bool, MetaError> {
    Ok(tx
        .query_row("SELECT 1 FROM image_shares WHERE image_id = ?1 LIMIT 1", [image_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// A `Creating` image's progress: the mean of its snapshots' (a snapshot that is gone
/// counts 0).
pub fn progress(tx: &Transaction<'_>, image_id: &str) -> Result<i64, MetaError> {
    let p: Option<f64> = tx.query_row(
        "SELECT AVG(COALESCE(s.progress, 0)) FROM image_disks d LEFT JOIN snapshots s ON s.id = d.snapshot_id
         WHERE d.image_id = ?1",
        [image_id],
        |r| r.get(0),
    )?;
    Ok(p.unwrap_or(0.0).floor() as i64)
}

/// The images whose disks include snapshot `snapshot_id`.
pub fn images_of_snapshot(tx: &Transaction<'_>, snapshot_id: &str) -> Result<Vec<String>, MetaError> {
    all(tx, "SELECT DISTINCT image_id FROM image_disks WHERE snapshot_id = ?1 ORDER BY image_id", [snapshot_id], |r| {
        r.get(0)
    })
}

/// Moves each `Creating` image that uses snapshot `snapshot_id` on, in the caller's
/// transaction (the one that recorded the snapshot's end): `Available` when every one of its
/// snapshots is accomplished, `CreateFailed` when one failed or is gone; else it stays.
/// `true` if an image moved.
pub fn settle(tx: &Transaction<'_>, snapshot_id: &str, at: &str) -> Result<bool, MetaError> {
    let mut moved = false;
    for id in images_of_snapshot(tx, snapshot_id)? {
        let Some(i) = get(tx, &id)? else { continue };
        if i.status != ImageStatus::Creating {
            continue;
        }
        let mut failed = None;
        let mut done = true;
        for d in disks(tx, &id)? {
            match snapshot::get_any_owner(tx, &d.snapshot_id)? {
                Some(s) if s.status == SnapshotStatus::Accomplished => {}
                Some(s) if s.status == SnapshotStatus::Progressing => done = false,
                Some(s) => failed = Some(format!("the snapshot {} of {} failed: {}", s.id, d.device, s.failure)),
                None => failed = Some(format!("the snapshot {} of {} is gone", d.snapshot_id, d.device)),
            }
        }
        let (status, failure) = match (failed, done) {
            (Some(why), _) => (ImageStatus::CreateFailed, why),
            (None, true) => (ImageStatus::Available, String::new()),
            (None, false) => continue,
        };
        tx.execute(
            "UPDATE images SET status = ?2, failure = ?3, modified_at = ?4 WHERE id = ?1",
            params![id, status.as_str(), failure, at],
        )?;
        moved = true;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{insert_disk, Disk};
    use crate::snapshot::{block, commit, create as create_snapshot, fail, pinned, Commit, NewSnapshot, SnapshotType};
    use crate::testing::{self, w};
    use crate::Store;
    use feitian_agent_api::snapshot::{PinInfo, RangeBlock, SnapshotUpload};

    fn hash(c: char) -> String {
        c.to_string().repeat(64)
    }

    fn refs(s: &Store, c: char) -> u64 {
        s.read(|tx| block(tx, &hash(c))).unwrap().map_or(0, |b| b.refs)
    }

    /// A snapshot of a new disk, pinned; committed with blocks `a` and `b` when `done`.
    fn snapshot(s: &Store, account: u64, done: bool) -> String {
        let d = Disk { attached_at: testing::CREATED.into(), ..testing::data_disk(s, account) };
        w(s, |tx| insert_disk(tx, &d));
        let id = testing::register(s, account, "snapshot", "s");
        let new = NewSnapshot {
            id: id.clone(),
            disk: &d,
            name: String::new(),
            description: String::new(),
            snapshot_type: SnapshotType::User,
            retention_days: None,
            at: "t0".into(),
        };
        s.write(|tx| create_snapshot(tx, &Quotas::default(), &new)).unwrap();
        assert!(w(s, |tx| pinned(tx, &id, PinInfo { next_seq: 2, size_bytes: 20 << 30 }, "t1")));
        if done {
            let upload = SnapshotUpload {
                id: id.clone(),
                base: None,
                ranges: vec![
                    RangeBlock { range: 0, block: Some(hash('a')) },
                    RangeBlock { range: 1, block: Some(hash('b')) },
                ],
                read_bytes: 0,
                stored_bytes: 0,
            };
            assert_eq!(w(s, |tx| commit(tx, &upload, "t2")), Commit::Done);
        }
        id
    }

    fn image(s: &Store, account: u64, name: &str, status: ImageStatus) -> Image {
        let id = testing::register(s, account, "image", "m");
        Image { size_gib: 20, ..Image::new(&id, account, "cn-hangzhou", name, status, "t3") }
    }

    fn disk_of(snapshot_id: &str, device: &str, disk_type: DiskType) -> ImageDisk {
        ImageDisk { device: device.into(), disk_type, snapshot_id: snapshot_id.into(), size_gib: 20 }
    }

    fn status(s: &Store, id: &str) -> ImageStatus {
        s.read(|tx| get(tx, id)).unwrap().unwrap().status
    }

    #[test]
    fn an_image_is_available_once_every_snapshot_is_and_fails_with_one() {
        let (s, account) = testing::store();
        let system = snapshot(&s, account, false);
        let data = snapshot(&s, account, false);
        let img = image(&s, account, "two-disks", ImageStatus::Creating);
        let disks = [disk_of(&system, "/dev/xvda", DiskType::System), disk_of(&data, "/dev/xvdb", DiskType::Data)];
        s.write(|tx| create(tx, &Quotas::default(), &img, &disks).map_err(|e| MetaError::Invalid(e.to_string())))
            .unwrap();
        assert_eq!(s.read(|tx| progress(tx, &img.id)).unwrap(), 0);
        // One of two accomplished: still Creating, half way.
        let upload = SnapshotUpload { id: system.clone(), base: None, ranges: vec![], read_bytes: 0, stored_bytes: 0 };
        assert_eq!(w(&s, |tx| commit(tx, &upload, "t4")), Commit::Done);
        assert!(!w(&s, |tx| settle(tx, &system, "t4")));
        assert_eq!(status(&s, &img.id), ImageStatus::Creating);
        assert_eq!(s.read(|tx| progress(tx, &img.id)).unwrap(), 50);
        // The other accomplished: Available.
        let upload = SnapshotUpload { id: data.clone(), ..upload };
        assert_eq!(w(&s, |tx| commit(tx, &upload, "t5")), Commit::Done);
        assert!(w(&s, |tx| settle(tx, &data, "t5")));
        assert_eq!(status(&s, &img.id), ImageStatus::Available);
        // Its snapshots are kept from deletion while it lives, and free again after.
        let used = s.read(|tx| crate::snapshot::get(tx, account, &system)).unwrap().unwrap();
        assert_eq!((used.usage.as_str(), used.images_created), ("image", 1));
        assert!(w(&s, |tx| delete(tx, &img.id)));
        let used = s.read(|tx| crate::snapshot::get(tx, account, &system)).unwrap().unwrap();
        assert_eq!((used.usage.as_str(), used.images_created), ("none", 0));
        assert!(!w(&s, |tx| delete(tx, &img.id)), "deleting twice finds nothing");

        // A snapshot that fails fails its image.
        let failing = snapshot(&s, account, false);
        let img = image(&s, account, "failing", ImageStatus::Creating);
        let disks = [disk_of(&failing, "/dev/xvda", DiskType::System)];
        s.write(|tx| create(tx, &Quotas::default(), &img, &disks).map_err(|e| MetaError::Invalid(e.to_string())))
            .unwrap();
        assert!(w(&s, |tx| fail(tx, &failing, "the disk is gone", "t6")));
        assert!(w(&s, |tx| settle(tx, &failing, "t6")));
        let got = s.read(|tx| get(tx, &img.id)).unwrap().unwrap();
        assert_eq!(got.status, ImageStatus::CreateFailed);
        assert!(got.failure.contains("the disk is gone"), "{}", got.failure);
    }

    #[test]
    fn names_are_unique_per_account_and_region_and_the_quota_holds() {
        let (s, account) = testing::store();
        let snap = snapshot(&s, account, true);
        let first = image(&s, account, "same", ImageStatus::Available);
        let disks = [disk_of(&snap, "/dev/xvda", DiskType::System)];
        s.write(|tx| create(tx, &Quotas::default(), &first, &disks).map_err(|e| MetaError::Invalid(e.to_string())))
            .unwrap();
        let again = image(&s, account, "same", ImageStatus::Available);
        let err = s.write(|tx| Ok::<_, MetaError>(create(tx, &Quotas::default(), &again, &disks))).unwrap();
        assert!(matches!(err, Err(CreateError::NameTaken(_))), "{err:?}");
        let other = s.create_account("other").unwrap().id;
        let theirs = image(&s, other, "same", ImageStatus::Available);
        s.write(|tx| create(tx, &Quotas::default(), &theirs, &disks).map_err(|e| MetaError::Invalid(e.to_string())))
            .unwrap();
        // Sharing: the other account sees the first image as well as its own.
        w(&s, |tx| share(tx, &first.id, other, "t7"));
        let seen: Vec<String> =
            s.read(|tx| visible(tx, other, "cn-hangzhou")).unwrap().into_iter().map(|i| i.id).collect();
        assert_eq!(seen, vec![theirs.id.clone(), first.id.clone()]);
        assert!(s.read(|tx| visible_to(tx, other, &first.id)).unwrap().is_some());
        w(&s, |tx| unshare(tx, &first.id, other));
        assert!(s.read(|tx| visible_to(tx, other, &first.id)).unwrap().is_none());
        // A quota of one image: the second is refused.
        let quotas = Quotas::with_settings([("images", 1)]).unwrap();
        let second = image(&s, account, "second", ImageStatus::Available);
        let err = s.write(|tx| Ok::<_, MetaError>(create(tx, &quotas, &second, &disks))).unwrap();
        assert!(matches!(err, Err(CreateError::QuotaExceeded { max: 1, held: 1 })), "{err:?}");
    }

    #[test]
    fn a_copy_shares_the_blocks_and_holds_them_on_its_own() {
        let (s, account) = testing::store();
        let src = snapshot(&s, account, true);
        assert_eq!((refs(&s, 'a'), refs(&s, 'b')), (1, 1));
        let original = s.read(|tx| crate::snapshot::get(tx, account, &src)).unwrap().unwrap();
        let id = testing::register(&s, account, "snapshot", "s");
        let copy = w(&s, |tx| crate::snapshot::copy(tx, &original, &id, "cn-shanghai", "copied", "t8"));
        assert_eq!((copy.region_id.as_str(), copy.status), ("cn-shanghai", SnapshotStatus::Accomplished));
        assert!(!copy.chainable && copy.pin.is_none());
        assert_eq!(s.read(|tx| crate::snapshot::manifest(tx, &id)).unwrap().len(), 2);
        assert_eq!((refs(&s, 'a'), refs(&s, 'b')), (2, 2));
        // The source goes: the copy still names every block.
        assert!(w(&s, |tx| crate::snapshot::delete(tx, &src, "t9")));
        assert_eq!((refs(&s, 'a'), refs(&s, 'b')), (1, 1));
        assert!(s.read(|tx| crate::snapshot::dead_blocks(tx, 10)).unwrap().is_empty());
        assert!(w(&s, |tx| crate::snapshot::delete(tx, &id, "t10")));
        assert_eq!(s.read(|tx| crate::snapshot::dead_blocks(tx, 10)).unwrap().len(), 2);
    }
}
