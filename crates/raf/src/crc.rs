//! CRC32C (Castagnoli), the checksum of records and checkpoints, as Pangu uses for its
//! blocks; computed by `crc-fast`, which picks the fastest instructions at run time.

use crc_fast::{CrcAlgorithm, Digest};

/// The CRC32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(data)
}

/// `crc32c_append(crc32c(a), b) == crc32c(a ++ b)`: a record's checksum covers a prefix
/// and its blocks without copying them together.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    if data.is_empty() {
        return crc;
    }
    // The digest's register holds the complement between updates.
    let mut digest = Digest::new_with_init_state(CrcAlgorithm::Crc32Iscsi, u64::from(!crc));
    digest.update(data);
    digest.finalize() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_and_append() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for cut in [0, 1, 4095, 4096, 9999, 10_000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(crc32c_append(crc32c(a), b), crc32c(&data), "cut {cut}");
        }
    }
}
