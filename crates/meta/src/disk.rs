//! Cloud disks (table `disks`). Today every instance has a system disk record, created with it
//! and (by default) deleted with it.

use crate::filter::Filter;
use crate::query::{all, page};
use crate::resource::forget_resource;
use crate::status::status_enum;
use crate::MetaError;
use rusqlite::{params, Row, Transaction};

status_enum! {
    /// What `DescribeDisks` shows a disk as (the API's spellings, `In_use` included).
    pub enum DiskStatus as "disk status" {
        Creating = "Creating",
        Available = "Available",
        Attaching = "Attaching",
        InUse = "In_use",
        Detaching = "Detaching",
        ReIniting = "ReIniting",
    }
}

status_enum! {
    /// What a disk is to its instance (`DescribeDisks`' `Type`).
    pub enum DiskType as "disk type" {
        System = "system",
        Data = "data",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub id: String,
    pub account_id: u64,
    pub region_id: String,
    pub zone_id: String,
    pub instance_id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub size_gib: i64,
    pub disk_type: DiskType,
    pub device: String,
    pub image_id: String,
    pub status: DiskStatus,
    pub delete_with_instance: bool,
    pub created_at: String,
}

const DISK_COLS: &str = "id, account_id, region_id, zone_id, instance_id, name, description, category, size_gib, disk_type, device, image_id, status, delete_with_instance, created_at";

fn disk_row(r: &Row<'_>) -> rusqlite::Result<Disk> {
    Ok(Disk {
        id: r.get(0)?,
        account_id: r.get::<_, i64>(1)? as u64,
        region_id: r.get(2)?,
        zone_id: r.get(3)?,
        instance_id: r.get(4)?,
        name: r.get(5)?,
        description: r.get(6)?,
        category: r.get(7)?,
        size_gib: r.get(8)?,
        disk_type: r.get(9)?,
        device: r.get(10)?,
        image_id: r.get(11)?,
        status: r.get(12)?,
        delete_with_instance: r.get(13)?,
        created_at: r.get(14)?,
    })
}

pub fn insert_disk(tx: &Transaction<'_>, d: &Disk) -> Result<(), MetaError> {
    tx.execute(
        &format!(
            "INSERT INTO disks ({DISK_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
        ),
        params![
            d.id,
            d.account_id as i64,
            d.region_id,
            d.zone_id,
            d.instance_id,
            d.name,
            d.description,
            d.category,
            d.size_gib,
            d.disk_type,
            d.device,
            d.image_id,
            d.status,
            d.delete_with_instance,
            d.created_at
        ],
    )?;
    Ok(())
}

pub fn disks_of_instance(tx: &Transaction<'_>, instance_id: &str) -> Result<Vec<Disk>, MetaError> {
    all(tx, &format!("SELECT {DISK_COLS} FROM disks WHERE instance_id = ?1 ORDER BY device"), [instance_id], disk_row)
}

pub fn list_disks(tx: &Transaction<'_>, f: &Filter, offset: u64, limit: u64) -> Result<(Vec<Disk>, u64), MetaError> {
    page(tx, "disks", DISK_COLS, f, offset, limit, disk_row)
}

/// GiB of an account's disks in a region, every category together (the `disk_capacity_gib`
/// quota).
pub fn capacity_used_gib(tx: &Transaction<'_>, account_id: u64, region_id: &str) -> Result<u64, MetaError> {
    let gib: i64 = tx.query_row(
        "SELECT COALESCE(SUM(size_gib), 0) FROM disks WHERE account_id = ?1 AND region_id = ?2",
        params![account_id as i64, region_id],
        |r| r.get(0),
    )?;
    Ok(gib.max(0) as u64)
}

pub fn set_disk_status_for_instance(
    tx: &Transaction<'_>,
    instance_id: &str,
    status: DiskStatus,
) -> Result<(), MetaError> {
    tx.execute("UPDATE disks SET status = ?2 WHERE instance_id = ?1", params![instance_id, status])?;
    Ok(())
}

/// What becomes of an instance's disks when it is deleted: those that go with it are deleted,
/// the others detached and `Available`.
pub(crate) fn release_disks_of_instance(tx: &Transaction<'_>, instance_id: &str) -> Result<(), MetaError> {
    for d in disks_of_instance(tx, instance_id)? {
        if d.delete_with_instance {
            tx.execute("DELETE FROM disks WHERE id = ?1", [&d.id])?;
            forget_resource(tx, &d.id)?;
        } else {
            tx.execute(
                "UPDATE disks SET instance_id = '', status = ?2 WHERE id = ?1",
                params![d.id, DiskStatus::Available],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::assert_sql_round_trips;
    use crate::testing;

    #[test]
    fn disk_statuses_round_trip() {
        assert_sql_round_trips(DiskStatus::ALL, DiskStatus::as_str, DiskStatus::parse);
        assert_sql_round_trips(DiskType::ALL, DiskType::as_str, DiskType::parse);
    }

    #[test]
    fn a_disk_row_keeps_its_status() {
        let (s, account) = testing::store();
        for (n, &status) in DiskStatus::ALL.iter().enumerate() {
            let d = Disk {
                id: testing::register(&s, account, "disk", "d"),
                account_id: account,
                region_id: testing::REGION.into(),
                zone_id: testing::ZONE.into(),
                instance_id: format!("i-{n}"),
                name: String::new(),
                description: String::new(),
                category: "cloud_essd".into(),
                size_gib: 20,
                disk_type: if n % 2 == 0 { DiskType::System } else { DiskType::Data },
                device: "/dev/xvda".into(),
                image_id: "img".into(),
                status,
                delete_with_instance: n % 2 == 0,
                created_at: testing::CREATED.into(),
            };
            s.write(|tx| insert_disk(tx, &d)).unwrap();
            assert_eq!(s.read(|tx| disks_of_instance(tx, &d.instance_id)).unwrap(), vec![d.clone()]);
            s.write(|tx| set_disk_status_for_instance(tx, &d.instance_id, DiskStatus::Detaching)).unwrap();
            assert_eq!(s.read(|tx| disks_of_instance(tx, &d.instance_id)).unwrap()[0].status, DiskStatus::Detaching);
            s.write(|tx| release_disks_of_instance(tx, &d.instance_id)).unwrap();
            let left = s
                .read(|tx| list_disks(tx, &Filter::owned(account, testing::REGION).eq("id", Some(&d.id)), 0, 1))
                .unwrap()
                .0;
            match d.delete_with_instance {
                true => assert!(left.is_empty()),
                false => assert_eq!((left[0].status, left[0].instance_id.as_str()), (DiskStatus::Available, "")),
            }
        }
    }
}
