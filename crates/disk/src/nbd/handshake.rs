//! The handshake over a socket: greeting, client flags, then options until one ends the
//! negotiation. The decisions are `proto`'s; this module only moves the bytes. The caller
//! bounds its time (10 s); `proto` bounds each option's data.

use super::proto::{self, Export, Next};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How a negotiation ended without error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Transmission starts on the same socket.
    Transmission,
    /// The client aborted, or asked for an export that is not here.
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Proto(#[from] proto::ProtoError),
}

/// Negotiates `export` with the client on `s`.
pub(crate) async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    export: &Export,
) -> Result<Outcome, HandshakeError> {
    s.write_all(&proto::greeting()).await?;
    s.flush().await?;
    let flags = proto::client_flags(s.read_u32().await?)?;
    loop {
        let mut header = [0u8; proto::OPTION_HEADER_LEN];
        s.read_exact(&mut header).await?;
        let h = proto::option_header(&header)?;
        let mut data = vec![0u8; h.length as usize];
        s.read_exact(&mut data).await?;
        let answer = proto::answer_option(h.option, &data, export, flags);
        s.write_all(&answer.reply).await?;
        s.flush().await?;
        match answer.next {
            Next::Option => {}
            Next::Transmission => return Ok(Outcome::Transmission),
            Next::Close => return Ok(Outcome::Closed),
        }
    }
}
