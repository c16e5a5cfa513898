//! The NBD wire protocol, as far as feitian's disk server speaks it: pure encoding, decoding
//! and the decisions of the handshake and of request validation, with no sockets.
//!
//! Source: the protocol document of the reference implementation (NetworkBlockDevice/nbd,
//! `doc/proto.md`). What is spoken:
//!
//! | phase | feitian |
//! |---|---|
//! | handshake | fixed newstyle only (`NBD_FLAG_FIXED_NEWSTYLE`, `NBD_FLAG_NO_ZEROES`); unknown client flags close the connection |
//! | `NBD_OPT_EXPORT_NAME` | the export's name or `""`: size, flags (and 124 zeroes unless `NO_ZEROES`); another name closes the connection (the option has no error reply) |
//! | `NBD_OPT_INFO`, `NBD_OPT_GO` | `NBD_INFO_EXPORT` and `NBD_INFO_BLOCK_SIZE` (4096 / 4096 / 32 MiB) always, then `NBD_REP_ACK`; unknown name: `NBD_REP_ERR_UNKNOWN`; malformed: `NBD_REP_ERR_INVALID` |
//! | `NBD_OPT_LIST` | one `NBD_REP_SERVER`, then `NBD_REP_ACK`; with data: `NBD_REP_ERR_INVALID` |
//! | `NBD_OPT_ABORT` | `NBD_REP_ACK`, then close |
//! | anything else (`STARTTLS`, `STRUCTURED_REPLY`, meta contexts, extended headers, …) | `NBD_REP_ERR_UNSUP`: the client goes on without it (simple replies, no TLS: the socket is a local unix socket checked by peer credentials) |
//! | transmission | simple replies only; READ, WRITE (FUA), FLUSH, TRIM (FUA), WRITE_ZEROES (FUA, NO_HOLE), CACHE (a no-op), DISC |
//!
//! Every offset and length must be a multiple of 4096 and inside the export, and a READ or
//! WRITE at most 32 MiB; anything else is answered `EINVAL` (the NBD errno values are
//! Linux's). A WRITE longer than the maximum cannot be skipped without reading what the peer
//! chooses to send, so the server answers it and closes the connection ([`Verdict::Refuse`]
//! with `close`).

/// `NBDMAGIC`: the first 8 bytes the server sends.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: the newstyle magic, also the magic of every option the client sends.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic of every option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of a transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

/// Handshake flags (server).
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flags.
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

/// Transmission flags.
pub const TFLAG_HAS_FLAGS: u16 = 1 << 0;
pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
pub const TFLAG_SEND_FUA: u16 = 1 << 3;
pub const TFLAG_SEND_TRIM: u16 = 1 << 5;
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const TFLAG_SEND_CACHE: u16 = 1 << 10;
/// What every export of this server advertises.
pub const TRANSMISSION_FLAGS: u16 =
    TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_SEND_FUA | TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES | TFLAG_SEND_CACHE;

/// Option codes.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;

/// Option reply types.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
pub const REP_ERR_INVALID: u32 = (1 << 31) + 3;
pub const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;

/// Information types of `NBD_REP_INFO`.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Command types.
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_CACHE: u16 = 5;
pub const CMD_WRITE_ZEROES: u16 = 6;

/// Command flags.
pub const CMD_FLAG_FUA: u16 = 1 << 0;
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;

/// Errors of simple replies (Linux errno values, as the protocol specifies).
pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const ENOMEM: u32 = 12;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;

/// Every offset and length is a multiple of this (the disk's block, and what QEMU is told is
/// the minimum and preferred block size).
pub const BLOCK_SIZE: u32 = 4096;
/// The longest READ or WRITE (and what QEMU is told is the maximum block size).
pub const MAX_PAYLOAD: u32 = 32 << 20;
/// The longest option data accepted in the handshake: a name (at most 4096 bytes by the
/// spec), its length, and a list of information requests. Longer is a hard disconnect: the
/// peer is not honouring the protocol, and reading on would let it make us hold its bytes.
pub const MAX_OPTION_DATA: u32 = 8192;

/// Bytes of a client option header, a request header and a simple reply header.
pub const OPTION_HEADER_LEN: usize = 16;
pub const REQUEST_LEN: usize = 28;
pub const SIMPLE_REPLY_LEN: usize = 16;

/// A protocol violation: the connection is closed without a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("client flags {0:#x} carry bits the server did not offer")]
    UnknownClientFlags(u32),
    #[error("option magic {0:#x} is not IHAVEOPT")]
    BadOptionMagic(u64),
    #[error("option data of {0} bytes is over the limit of {MAX_OPTION_DATA}")]
    OptionTooLong(u32),
    #[error("request magic {0:#x} is not NBD_REQUEST_MAGIC")]
    BadRequestMagic(u32),
}

/// The 18 bytes the server opens with: magic, newstyle magic, handshake flags.
pub fn greeting() -> [u8; 18] {
    let mut g = [0u8; 18];
    g[..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    g[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    g[16..].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    g
}

/// What the client's flags mean for the rest of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFlags {
    /// The 124 zero bytes after `NBD_OPT_EXPORT_NAME`'s answer are left out.
    pub no_zeroes: bool,
}

/// Checks the client's 32-bit flags: only the two the server offered may be set.
pub fn client_flags(raw: u32) -> Result<ClientFlags, ProtoError> {
    if raw & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(ProtoError::UnknownClientFlags(raw));
    }
    Ok(ClientFlags { no_zeroes: raw & FLAG_C_NO_ZEROES != 0 })
}

/// An option's header: which option and how many data bytes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    pub option: u32,
    pub length: u32,
}

/// Decodes an option header; refuses a wrong magic and data over [`MAX_OPTION_DATA`].
pub fn option_header(b: &[u8; OPTION_HEADER_LEN]) -> Result<OptionHeader, ProtoError> {
    let magic = u64::from_be_bytes(arr(&b[..8]));
    if magic != IHAVEOPT {
        return Err(ProtoError::BadOptionMagic(magic));
    }
    let h = OptionHeader { option: u32::from_be_bytes(arr(&b[8..12])), length: u32::from_be_bytes(arr(&b[12..16])) };
    if h.length > MAX_OPTION_DATA {
        return Err(ProtoError::OptionTooLong(h.length));
    }
    Ok(h)
}

/// The one export a socket serves, as the handshake describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub name: String,
    pub size: u64,
}

impl Export {
    /// A client may name the export or ask for the default one (`""`).
    fn answers_to(&self, name: &[u8]) -> bool {
        name.is_empty() || name == self.name.as_bytes()
    }
}

/// What the server does after answering an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait for the next option.
    Option,
    /// The handshake is over: transmission starts.
    Transmission,
    /// Close the connection (after sending `reply`, if any).
    Close,
}

/// The server's answer to one option: bytes to send, then what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub reply: Vec<u8>,
    pub next: Next,
}

/// Decides the answer to one option (`data` is its whole data).
pub fn answer_option(option: u32, data: &[u8], export: &Export, flags: ClientFlags) -> Answer {
    match option {
        OPT_EXPORT_NAME => {
            if !export.answers_to(data) {
                // This option has no error reply: the spec says terminate.
                return Answer { reply: Vec::new(), next: Next::Close };
            }
            let mut r = Vec::with_capacity(10 + 124);
            r.extend_from_slice(&export.size.to_be_bytes());
            r.extend_from_slice(&TRANSMISSION_FLAGS.to_be_bytes());
            if !flags.no_zeroes {
                r.extend_from_slice(&[0u8; 124]);
            }
            Answer { reply: r, next: Next::Transmission }
        }
        OPT_ABORT => Answer { reply: option_reply(option, REP_ACK, &[]), next: Next::Close },
        OPT_LIST => {
            if !data.is_empty() {
                return Answer {
                    reply: option_reply(option, REP_ERR_INVALID, b"LIST takes no data"),
                    next: Next::Option,
                };
            }
            let mut server = Vec::with_capacity(4 + export.name.len());
            server.extend_from_slice(&(export.name.len() as u32).to_be_bytes());
            server.extend_from_slice(export.name.as_bytes());
            let mut reply = option_reply(option, REP_SERVER, &server);
            reply.extend_from_slice(&option_reply(option, REP_ACK, &[]));
            Answer { reply, next: Next::Option }
        }
        OPT_INFO | OPT_GO => {
            let Some(name) = info_request_name(data) else {
                return Answer {
                    reply: option_reply(option, REP_ERR_INVALID, b"malformed INFO/GO request"),
                    next: Next::Option,
                };
            };
            if !export.answers_to(name) {
                return Answer { reply: option_reply(option, REP_ERR_UNKNOWN, b"no such export"), next: Next::Option };
            }
            // NBD_INFO_EXPORT is mandatory; the block sizes are sent whether or not they
            // were asked for (the spec allows it), so that clients align to 4 KiB.
            let mut info = Vec::with_capacity(12);
            info.extend_from_slice(&INFO_EXPORT.to_be_bytes());
            info.extend_from_slice(&export.size.to_be_bytes());
            info.extend_from_slice(&TRANSMISSION_FLAGS.to_be_bytes());
            let mut reply = option_reply(option, REP_INFO, &info);
            let mut sizes = Vec::with_capacity(14);
            sizes.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
            sizes.extend_from_slice(&BLOCK_SIZE.to_be_bytes());
            sizes.extend_from_slice(&BLOCK_SIZE.to_be_bytes());
            sizes.extend_from_slice(&MAX_PAYLOAD.to_be_bytes());
            reply.extend_from_slice(&option_reply(option, REP_INFO, &sizes));
            reply.extend_from_slice(&option_reply(option, REP_ACK, &[]));
            let next = if option == OPT_GO { Next::Transmission } else { Next::Option };
            Answer { reply, next }
        }
        // STARTTLS: a server without TLS answers ERR_UNSUP. STRUCTURED_REPLY: ERR_UNSUP
        // makes the client use simple replies. The rest are unknown here.
        _ => Answer { reply: option_reply(option, REP_ERR_UNSUP, &[]), next: Next::Option },
    }
}

/// The export name of an `NBD_OPT_INFO`/`NBD_OPT_GO`: 32-bit name length, name, 16-bit count
/// of information requests, that many 16-bit requests; `None` unless the lengths add up.
/// The requests themselves are not needed: every answer carries the same information.
fn info_request_name(data: &[u8]) -> Option<&[u8]> {
    let len = usize::try_from(u32::from_be_bytes(arr(data.get(..4)?))).ok()?;
    let name = data.get(4..4usize.checked_add(len)?)?;
    let rest = &data[4 + len..];
    let count = usize::from(u16::from_be_bytes(arr(rest.get(..2)?)));
    (rest.len() == 2 + 2 * count).then_some(name)
}

/// One option reply: magic, option, type, length, data.
pub fn option_reply(option: u32, kind: u32, data: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(20 + data.len());
    r.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    r.extend_from_slice(&option.to_be_bytes());
    r.extend_from_slice(&kind.to_be_bytes());
    r.extend_from_slice(&(data.len() as u32).to_be_bytes());
    r.extend_from_slice(data);
    r
}

/// A transmission request's header, decoded but not yet judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub flags: u16,
    pub kind: u16,
    pub handle: u64,
    pub offset: u64,
    pub length: u32,
}

/// Decodes a request header; a wrong magic is a protocol violation.
pub fn request(b: &[u8; REQUEST_LEN]) -> Result<Request, ProtoError> {
    let magic = u32::from_be_bytes(arr(&b[..4]));
    if magic != REQUEST_MAGIC {
        return Err(ProtoError::BadRequestMagic(magic));
    }
    Ok(Request {
        flags: u16::from_be_bytes(arr(&b[4..6])),
        kind: u16::from_be_bytes(arr(&b[6..8])),
        handle: u64::from_be_bytes(arr(&b[8..16])),
        offset: u64::from_be_bytes(arr(&b[16..24])),
        length: u32::from_be_bytes(arr(&b[24..28])),
    })
}

/// A request the device is to carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Read {
        offset: u64,
        length: u32,
    },
    /// The payload (`length` bytes) follows the header.
    Write {
        offset: u64,
        length: u32,
        fua: bool,
    },
    Flush,
    Trim {
        offset: u64,
        length: u32,
        fua: bool,
    },
    WriteZeroes {
        offset: u64,
        length: u32,
        fua: bool,
    },
    /// A prefetch hint: answered at once (nothing to warm on a file or a log).
    Cache,
    Disconnect,
}

/// The judgement of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Run(Command),
    /// Answer with `errno`. `discard` payload bytes follow the header and must be read and
    /// dropped first; with `close`, the connection is closed after the reply instead (the
    /// payload is too large to read).
    Refuse {
        errno: u32,
        discard: u32,
        close: bool,
    },
}

/// Judges a request against an export of `size` bytes.
pub fn judge(r: &Request, size: u64) -> Verdict {
    let einval = |discard: u32| Verdict::Refuse { errno: EINVAL, discard, close: false };
    match r.kind {
        CMD_WRITE => {
            if r.length > MAX_PAYLOAD {
                return Verdict::Refuse { errno: EINVAL, discard: 0, close: true };
            }
            if r.flags & !CMD_FLAG_FUA != 0 || !in_range(r.offset, r.length, size) {
                return einval(r.length);
            }
            Verdict::Run(Command::Write { offset: r.offset, length: r.length, fua: r.flags & CMD_FLAG_FUA != 0 })
        }
        CMD_READ => {
            if r.flags != 0 || r.length > MAX_PAYLOAD || !in_range(r.offset, r.length, size) {
                return einval(0);
            }
            Verdict::Run(Command::Read { offset: r.offset, length: r.length })
        }
        CMD_TRIM => {
            if r.flags & !CMD_FLAG_FUA != 0 || !in_range(r.offset, r.length, size) {
                return einval(0);
            }
            Verdict::Run(Command::Trim { offset: r.offset, length: r.length, fua: r.flags & CMD_FLAG_FUA != 0 })
        }
        CMD_WRITE_ZEROES => {
            // NO_HOLE asks that the zeros be allocated; a log-structured disk stores a zero
            // record either way, so the flag is accepted and changes nothing.
            if r.flags & !(CMD_FLAG_FUA | CMD_FLAG_NO_HOLE) != 0 || !in_range(r.offset, r.length, size) {
                return einval(0);
            }
            Verdict::Run(Command::WriteZeroes { offset: r.offset, length: r.length, fua: r.flags & CMD_FLAG_FUA != 0 })
        }
        CMD_CACHE => {
            if r.flags != 0 || !in_range(r.offset, r.length, size) {
                return einval(0);
            }
            Verdict::Run(Command::Cache)
        }
        CMD_FLUSH => {
            if r.flags != 0 || r.offset != 0 || r.length != 0 {
                return einval(0);
            }
            Verdict::Run(Command::Flush)
        }
        CMD_DISC => Verdict::Run(Command::Disconnect),
        _ => einval(0),
    }
}

/// Aligned to the block and entirely inside the export.
fn in_range(offset: u64, length: u32, size: u64) -> bool {
    let b = u64::from(BLOCK_SIZE);
    offset % b == 0
        && u64::from(length) % b == 0
        && offset.checked_add(u64::from(length)).is_some_and(|end| end <= size)
}

/// A simple reply's header (the data of a successful READ follows it).
pub fn simple_reply(handle: u64, errno: u32) -> [u8; SIMPLE_REPLY_LEN] {
    let mut r = [0u8; SIMPLE_REPLY_LEN];
    r[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    r[4..8].copy_from_slice(&errno.to_be_bytes());
    r[8..].copy_from_slice(&handle.to_be_bytes());
    r
}

/// A fixed-size array from a slice whose length the caller has already ensured.
fn arr<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&s[..N]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export() -> Export {
        Export { name: "d-abc".into(), size: 1 << 30 }
    }

    const FLAGS: ClientFlags = ClientFlags { no_zeroes: true };

    /// Splits a stream of option replies into (option, type, data).
    fn replies(mut b: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            assert_eq!(u64::from_be_bytes(arr(&b[..8])), OPTION_REPLY_MAGIC);
            let len = u32::from_be_bytes(arr(&b[16..20])) as usize;
            out.push((
                u32::from_be_bytes(arr(&b[8..12])),
                u32::from_be_bytes(arr(&b[12..16])),
                b[20..20 + len].to_vec(),
            ));
            b = &b[20 + len..];
        }
        out
    }

    fn go_data(name: &[u8], infos: &[u16]) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name);
        d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
        for i in infos {
            d.extend_from_slice(&i.to_be_bytes());
        }
        d
    }

    #[test]
    fn greeting_is_fixed_newstyle_with_no_zeroes() {
        let g = greeting();
        assert_eq!(&g[..8], b"NBDMAGIC");
        assert_eq!(&g[8..16], b"IHAVEOPT");
        assert_eq!(u16::from_be_bytes([g[16], g[17]]), 3);
    }

    #[test]
    fn client_flags_beyond_the_offered_close() {
        assert_eq!(client_flags(1), Ok(ClientFlags { no_zeroes: false }));
        assert_eq!(client_flags(3), Ok(ClientFlags { no_zeroes: true }));
        assert_eq!(client_flags(4), Err(ProtoError::UnknownClientFlags(4)));
    }

    #[test]
    fn option_headers_are_checked() {
        let mut h = [0u8; 16];
        h[..8].copy_from_slice(b"IHAVEOPT");
        h[8..12].copy_from_slice(&OPT_GO.to_be_bytes());
        h[12..].copy_from_slice(&10u32.to_be_bytes());
        assert_eq!(option_header(&h), Ok(OptionHeader { option: OPT_GO, length: 10 }));
        h[12..].copy_from_slice(&(MAX_OPTION_DATA + 1).to_be_bytes());
        assert_eq!(option_header(&h), Err(ProtoError::OptionTooLong(MAX_OPTION_DATA + 1)));
        h[0] = b'X';
        assert!(matches!(option_header(&h), Err(ProtoError::BadOptionMagic(_))));
    }

    #[test]
    fn go_answers_export_and_block_sizes_then_ack() {
        let a = answer_option(OPT_GO, &go_data(b"", &[INFO_BLOCK_SIZE]), &export(), FLAGS);
        assert_eq!(a.next, Next::Transmission);
        let r = replies(&a.reply);
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].0, r[0].1), (OPT_GO, REP_INFO));
        let mut want = INFO_EXPORT.to_be_bytes().to_vec();
        want.extend_from_slice(&(1u64 << 30).to_be_bytes());
        want.extend_from_slice(&TRANSMISSION_FLAGS.to_be_bytes());
        assert_eq!(r[0].2, want);
        let mut sizes = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
        for v in [4096u32, 4096, 32 << 20] {
            sizes.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(r[1].2, sizes);
        assert_eq!((r[2].1, r[2].2.len()), (REP_ACK, 0));
    }

    #[test]
    fn info_answers_like_go_but_stays_in_the_handshake() {
        let a = answer_option(OPT_INFO, &go_data(b"d-abc", &[]), &export(), FLAGS);
        assert_eq!(a.next, Next::Option);
        assert_eq!(replies(&a.reply).iter().map(|r| r.1).collect::<Vec<_>>(), [REP_INFO, REP_INFO, REP_ACK]);
    }

    #[test]
    fn go_for_another_export_or_malformed_is_an_error_reply() {
        let a = answer_option(OPT_GO, &go_data(b"d-other", &[]), &export(), FLAGS);
        assert_eq!((a.next, replies(&a.reply)[0].1), (Next::Option, REP_ERR_UNKNOWN));
        for bad in [vec![], vec![0, 0, 0, 9, b'x'], {
            let mut d = go_data(b"", &[1]);
            d.pop();
            d
        }] {
            let a = answer_option(OPT_GO, &bad, &export(), FLAGS);
            assert_eq!((a.next, replies(&a.reply)[0].1), (Next::Option, REP_ERR_INVALID));
        }
        // A name length that would overflow is malformed, not a panic.
        let a = answer_option(OPT_GO, &[0xff, 0xff, 0xff, 0xff], &export(), FLAGS);
        assert_eq!(replies(&a.reply)[0].1, REP_ERR_INVALID);
    }

    #[test]
    fn export_name_answers_size_and_flags_or_closes() {
        let a = answer_option(OPT_EXPORT_NAME, b"", &export(), ClientFlags { no_zeroes: false });
        assert_eq!(a.next, Next::Transmission);
        assert_eq!(a.reply.len(), 8 + 2 + 124);
        assert_eq!(&a.reply[..8], &(1u64 << 30).to_be_bytes());
        assert_eq!(&a.reply[8..10], &TRANSMISSION_FLAGS.to_be_bytes());
        assert_eq!(answer_option(OPT_EXPORT_NAME, b"d-abc", &export(), FLAGS).reply.len(), 10);
        let a = answer_option(OPT_EXPORT_NAME, b"nope", &export(), FLAGS);
        assert_eq!(a, Answer { reply: vec![], next: Next::Close });
    }

    #[test]
    fn list_abort_and_unsupported() {
        let r = replies(&answer_option(OPT_LIST, &[], &export(), FLAGS).reply);
        assert_eq!(r[0].1, REP_SERVER);
        assert_eq!(r[0].2, [&5u32.to_be_bytes()[..], b"d-abc"].concat());
        assert_eq!(r[1].1, REP_ACK);
        assert_eq!(replies(&answer_option(OPT_LIST, b"x", &export(), FLAGS).reply)[0].1, REP_ERR_INVALID);
        let a = answer_option(OPT_ABORT, &[], &export(), FLAGS);
        assert_eq!((a.next, replies(&a.reply)[0].1), (Next::Close, REP_ACK));
        for opt in [OPT_STRUCTURED_REPLY, OPT_STARTTLS, 9, 10, 11, 0xdead] {
            let a = answer_option(opt, &[], &export(), FLAGS);
            assert_eq!((a.next, replies(&a.reply)[0].0, replies(&a.reply)[0].1), (Next::Option, opt, REP_ERR_UNSUP));
        }
    }

    fn req(kind: u16, flags: u16, offset: u64, length: u32) -> Request {
        Request { flags, kind, handle: 7, offset, length }
    }

    #[test]
    fn requests_decode() {
        let mut b = [0u8; REQUEST_LEN];
        b[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&1u16.to_be_bytes());
        b[6..8].copy_from_slice(&CMD_WRITE.to_be_bytes());
        b[8..16].copy_from_slice(&42u64.to_be_bytes());
        b[16..24].copy_from_slice(&8192u64.to_be_bytes());
        b[24..].copy_from_slice(&4096u32.to_be_bytes());
        assert_eq!(request(&b), Ok(Request { flags: 1, kind: CMD_WRITE, handle: 42, offset: 8192, length: 4096 }));
        b[0] = 0;
        assert!(matches!(request(&b), Err(ProtoError::BadRequestMagic(_))));
    }

    #[test]
    fn good_requests_run() {
        let size = 1 << 20;
        assert_eq!(judge(&req(CMD_READ, 0, 0, 4096), size), Verdict::Run(Command::Read { offset: 0, length: 4096 }));
        assert_eq!(
            judge(&req(CMD_WRITE, CMD_FLAG_FUA, size - 4096, 4096), size),
            Verdict::Run(Command::Write { offset: size - 4096, length: 4096, fua: true })
        );
        assert_eq!(judge(&req(CMD_FLUSH, 0, 0, 0), size), Verdict::Run(Command::Flush));
        assert_eq!(
            judge(&req(CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE, 0, 8192), size),
            Verdict::Run(Command::WriteZeroes { offset: 0, length: 8192, fua: false })
        );
        assert_eq!(
            judge(&req(CMD_TRIM, 0, 4096, 4096), size),
            Verdict::Run(Command::Trim { offset: 4096, length: 4096, fua: false })
        );
        assert_eq!(judge(&req(CMD_CACHE, 0, 0, 4096), size), Verdict::Run(Command::Cache));
        assert_eq!(judge(&req(CMD_DISC, 0, 0, 0), size), Verdict::Run(Command::Disconnect));
    }

    #[test]
    fn misaligned_out_of_range_and_unknown_are_einval() {
        let size = 1 << 20;
        let einval = Verdict::Refuse { errno: EINVAL, discard: 0, close: false };
        for r in [
            req(CMD_READ, 0, 512, 4096),
            req(CMD_READ, 0, 0, 512),
            req(CMD_READ, 0, size, 4096),
            req(CMD_READ, 0, u64::MAX - 4095, 4096),
            req(CMD_READ, 0, 0, MAX_PAYLOAD + 4096),
            req(CMD_READ, 1 << 2, 0, 4096),
            req(CMD_TRIM, 0, 0, 100),
            req(CMD_WRITE_ZEROES, 1 << 4, 0, 4096),
            req(CMD_FLUSH, 0, 0, 4096),
            req(CMD_CACHE, 0, size, 4096),
            req(99, 0, 0, 0),
        ] {
            assert_eq!(judge(&r, size), einval, "{r:?}");
        }
        // A bad write's payload is read and dropped, unless it is over the maximum.
        assert_eq!(
            judge(&req(CMD_WRITE, 0, 100, 4096), size),
            Verdict::Refuse { errno: EINVAL, discard: 4096, close: false }
        );
        assert_eq!(
            judge(&req(CMD_WRITE, 2, 0, 4096), size),
            Verdict::Refuse { errno: EINVAL, discard: 4096, close: false }
        );
        assert_eq!(
            judge(&req(CMD_WRITE, 0, 0, MAX_PAYLOAD + 4096), u64::MAX),
            Verdict::Refuse { errno: EINVAL, discard: 0, close: true }
        );
    }

    #[test]
    fn simple_reply_layout() {
        let r = simple_reply(0x0102_0304_0506_0708, EINVAL);
        assert_eq!(&r[..4], &SIMPLE_REPLY_MAGIC.to_be_bytes());
        assert_eq!(&r[4..8], &22u32.to_be_bytes());
        assert_eq!(&r[8..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }
}
