//! Image import and export tasks (tables `image_tasks`, `image_import_sources`;
//! docs/snapshots.md, "Image import and export"). The API records a task `Processing` with
//! what it needs; the control plane's worker does it and ends it here: [`finish`],
//! [`fail`], or the caller's [`cancel`]. Each end is a compare-and-set on `Processing`, so a
//! worker that raced a cancel changes nothing.

use crate::image::{self, ImageStatus};
use crate::query::all;
use crate::snapshot::{self, SnapshotStatus};
use crate::status::{column, status_enum};
use crate::MetaError;
use rusqlite::{params, OptionalExtension, Row, Transaction};

status_enum! {
    /// A task's `TaskStatus` (the API's spellings).
    pub enum TaskStatus as "task status" {
        Processing = "Processing",
        Finished = "Finished",
        Failed = "Failed",
        Cancelled = "Cancelled",
    }
}

status_enum! {
    /// A task's `TaskAction`.
    pub enum TaskAction as "task action" {
        ImportImage = "ImportImage",
        ExportImage = "ExportImage",
    }
}

/// One task row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    pub account_id: u64,
    pub region_id: String,
    pub action: TaskAction,
    pub status: TaskStatus,
    /// 0 to 100.
    pub progress: i64,
    pub image_id: String,
    pub failure: String,
    /// An export's destination: bucket, object key and format (`raw`, `qcow2`, `vhd`).
    pub bucket: String,
    pub object: String,
    pub format: String,
    pub created_at: String,
    /// Empty until it ends.
    pub finished_at: String,
}

impl Task {
    /// A new `Processing` task of `account_id` in `region_id` on image `image_id`, at `at`
    /// (an export's destination is set by the caller).
    pub fn new(id: &str, account_id: u64, region_id: &str, action: TaskAction, image_id: &str, at: &str) -> Task {
        Task {
            id: id.to_owned(),
            account_id,
            region_id: region_id.to_owned(),
            action,
            status: TaskStatus::Processing,
            progress: 0,
            image_id: image_id.to_owned(),
            failure: String::new(),
            bucket: String::new(),
            object: String::new(),
            format: String::new(),
            created_at: at.to_owned(),
            finished_at: String::new(),
        }
    }
}

/// What one snapshot of an import is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSource {
    pub snapshot_id: String,
    pub task_id: String,
    pub device: String,
    pub bucket: String,
    pub object: String,
    /// `raw`, `qcow2` or `vhd` (lower case).
    pub format: String,
    /// The disk's size, GiB; 0: the file's own, rounded up.
    pub size_gib: i64,
}

const COLS: &str =
    "id, account_id, region_id, action, status, progress, image_id, failure, bucket, object, format, created_at, finished_at";

fn row(r: &Row<'_>) -> rusqlite::Result<Task> {
    Ok(Task {
        id: r.get(0)?,
        account_id: r.get::<_, i64>(1)?.max(0) as u64,
        region_id: r.get(2)?,
        action: column(r, 3, "task action", TaskAction::parse)?,
        status: column(r, 4, "task status", TaskStatus::parse)?,
        progress: r.get(5)?,
        image_id: r.get(6)?,
        failure: r.get(7)?,
        bucket: r.get(8)?,
        object: r.get(9)?,
        format: r.get(10)?,
        created_at: r.get(11)?,
        finished_at: r.get(12)?,
    })
}

/// Records a task (its id registered by the caller in the same transaction).
pub fn create(tx: &Transaction<'_>, t: &Task) -> Result<(), MetaError> {
    tx.execute(
        &format!("INSERT INTO image_tasks ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
        params![
            t.id,
            t.account_id as i64,
            t.region_id,
            t.action.as_str(),
            t.status.as_str(),
            t.progress,
            t.image_id,
            t.failure,
            t.bucket,
            t.object,
            t.format,
            t.created_at,
            t.finished_at,
        ],
    )?;
    Ok(())
}

/// Records what an import's snapshot is made from.
pub fn add_source(tx: &Transaction<'_>, s: &ImportSource) -> Result<(), MetaError> {
    tx.execute(
        "INSERT INTO image_import_sources (snapshot_id, task_id, device, bucket, object, format, size_gib)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![s.snapshot_id, s.task_id, s.device, s.bucket, s.object, s.format, s.size_gib],
    )?;
    Ok(())
}

/// An import's sources, in device order.
pub fn sources(tx: &Transaction<'_>, task_id: &str) -> Result<Vec<ImportSource>, MetaError> {
    all(
        tx,
        "SELECT snapshot_id, task_id, device, bucket, object, format, size_gib FROM image_import_sources
         WHERE task_id = ?1 ORDER BY device",
        [task_id],
        |r| {
            Ok(ImportSource {
                snapshot_id: r.get(0)?,
                task_id: r.get(1)?,
                device: r.get(2)?,
                bucket: r.get(3)?,
                object: r.get(4)?,
                format: r.get(5)?,
                size_gib: r.get(6)?,
            })
        },
    )
}

/// A task by id, whoever owns it.
pub fn get(tx: &Transaction<'_>, id: &str) -> Result<Option<Task>, MetaError> {
    Ok(tx.query_row(&format!("SELECT {COLS} FROM image_tasks WHERE id = ?1"), [id], row).optional()?)
}

/// An account's tasks in a region, oldest first.
pub fn of_account(tx: &Transaction<'_>, account_id: u64, region_id: &str) -> Result<Vec<Task>, MetaError> {
    all(
        tx,
        &format!("SELECT {COLS} FROM image_tasks WHERE account_id = ?1 AND region_id = ?2 ORDER BY created_at, id"),
        params![account_id as i64, region_id],
        row,
    )
}

/// The worker's list: every `Processing` task, oldest first.
pub fn processing(tx: &Transaction<'_>) -> Result<Vec<Task>, MetaError> {
    all(tx, &format!("SELECT {COLS} FROM image_tasks WHERE status = 'Processing' ORDER BY created_at, id"), [], row)
}

/// Whether an export of the image is under way.
pub fn exporting(tx: &Transaction<'_>, image_id: &str) -> Result<bool, MetaError> {
    Ok(tx
        .query_row(
            "SELECT 1 FROM image_tasks WHERE image_id = ?1 AND action = 'ExportImage' AND status = 'Processing' LIMIT 1",
            [image_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The task's progress (only while `Processing`).
pub fn progress(tx: &Transaction<'_>, id: &str, percent: i64) -> Result<bool, MetaError> {
    Ok(tx.execute(
        "UPDATE image_tasks SET progress = ?2 WHERE id = ?1 AND status = 'Processing'",
        params![id, percent.clamp(0, 99)],
    )? == 1)
}

/// An import's snapshot is measured: its disk (and, for the system disk, the image) takes
/// `size_gib`.
pub fn set_size(tx: &Transaction<'_>, source: &ImportSource, image_id: &str, size_gib: i64) -> Result<(), MetaError> {
    snapshot::set_source_size(tx, &source.snapshot_id, size_gib)?;
    tx.execute(
        "UPDATE image_disks SET size_gib = ?3 WHERE image_id = ?1 AND snapshot_id = ?2",
        params![image_id, source.snapshot_id, size_gib],
    )?;
    tx.execute(
        "UPDATE images SET size_gib = ?2
         WHERE id = ?1 AND EXISTS (SELECT 1 FROM image_disks WHERE image_id = ?1 AND snapshot_id = ?3 AND disk_type = 'system')",
        params![image_id, size_gib, source.snapshot_id],
    )?;
    Ok(())
}

fn end(tx: &Transaction<'_>, id: &str, status: TaskStatus, failure: &str, at: &str) -> Result<bool, MetaError> {
    let progress = if status == TaskStatus::Finished { ", progress = 100" } else { "" };
    Ok(tx.execute(
        &format!(
            "UPDATE image_tasks SET status = ?2, failure = ?3, finished_at = ?4{progress} WHERE id = ?1 AND status = 'Processing'"
        ),
        params![id, status.as_str(), failure, at],
    )? == 1)
}

/// The worker finished the task (an import's snapshots committed, an export's object stored).
pub fn finish(tx: &Transaction<'_>, id: &str, at: &str) -> Result<bool, MetaError> {
    end(tx, id, TaskStatus::Finished, "", at)
}

/// The task failed: an import's snapshots still progressing fail with it, and so its image
/// (`CreateFailed`, with the reason).
pub fn fail(tx: &Transaction<'_>, id: &str, why: &str, at: &str) -> Result<bool, MetaError> {
    let Some(t) = get(tx, id)? else { return Ok(false) };
    if !end(tx, id, TaskStatus::Failed, why, at)? {
        return Ok(false);
    }
    if t.action == TaskAction::ImportImage {
        for s in sources(tx, id)? {
            if snapshot::fail(tx, &s.snapshot_id, why, at)? {
                image::settle(tx, &s.snapshot_id, at)?;
            }
        }
    }
    Ok(true)
}

/// The caller cancelled the task: an import's image and snapshots are deleted (their claims
/// dropped); an export stops. `false` if it was no longer `Processing`.
pub fn cancel(tx: &Transaction<'_>, id: &str, at: &str) -> Result<bool, MetaError> {
    let Some(t) = get(tx, id)? else { return Ok(false) };
    if !end(tx, id, TaskStatus::Cancelled, "cancelled by CancelTask", at)? {
        return Ok(false);
    }
    if t.action == TaskAction::ImportImage {
        let snapshots: Vec<String> = sources(tx, id)?.into_iter().map(|s| s.snapshot_id).collect();
        if image::get(tx, &t.image_id)?.is_some_and(|i| i.status == ImageStatus::Creating) {
            image::delete(tx, &t.image_id)?;
        }
        for sid in snapshots {
            if snapshot::get_any_owner(tx, &sid)?
                .is_some_and(|s| s.status != SnapshotStatus::Accomplished || s.images_created == 0)
            {
                snapshot::delete(tx, &sid, at)?;
            }
        }
    }
    Ok(true)
}
