//! `x-oss-request-id`: 24 uppercase hex digits, like the real service's
//! (`5C3D9175B6FC201293AD4890`). The caller supplies the parts — the time, which node answered,
//! and a per-node sequence number — so this stays a pure function; ids are unique as long as
//! the (node, sequence) pair is, and sort roughly by time, which helps whoever greps logs.

/// Formats a request id from the seconds since the epoch, the node id and the node's
/// sequence number: 8 hex digits each.
pub fn format(unix_seconds: u32, node: u32, sequence: u32) -> String {
    format!("{unix_seconds:08X}{node:08X}{sequence:08X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_like_oss() {
        let id = format(0x5C3D_9175, 0xB6FC_2012, 0x93AD_4890);
        assert_eq!(id, "5C3D9175B6FC201293AD4890");
        assert_eq!(format(0, 0, 1), "000000000000000000000001");
        assert_eq!(format(u32::MAX, u32::MAX, u32::MAX).len(), 24);
    }
}
