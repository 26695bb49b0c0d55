//! Which HTTP version a connection speaks, decided without taking a byte from it
//! (docs/gateway.md §1).
//!
//! On TLS the handshake has said it: ALPN `h2` is HTTP/2, anything else (`http/1.1`, or no
//! ALPN at all) HTTP/1.1 — RFC 9113 §3.2 has HTTP/2 over TLS negotiated, never assumed. On
//! plain TCP a client speaking HTTP/2 with prior knowledge opens with the 24-byte preface; the
//! bytes are *peeked* at, so they stay in the socket for hyper's own first read. (Reading them
//! and replaying them, as hyper-util's auto builder does, hands hyper a 24-byte first read,
//! after which it grows its HTTP/1 read buffer from 8 to 16 KiB for the connection's life:
//! docs/performance.md §6.3.)

use std::io;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// What a connection's first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Decided(Protocol),
    /// A proper prefix of the HTTP/2 preface (or nothing yet): more bytes will tell.
    Undecided,
}

/// Classifies the first bytes of a plain connection: the whole preface is HTTP/2, the first
/// byte that differs from it makes HTTP/1.1 (hyper answers what is not HTTP/1.1 either).
pub fn sniff(first: &[u8]) -> Sniffed {
    let n = first.len().min(H2_PREFACE.len());
    if first[..n] != H2_PREFACE[..n] {
        Sniffed::Decided(Protocol::Http1)
    } else if n == H2_PREFACE.len() {
        Sniffed::Decided(Protocol::Http2)
    } else {
        Sniffed::Undecided
    }
}

/// The protocol a TLS handshake negotiated.
pub fn from_alpn(alpn: Option<&[u8]>) -> Protocol {
    match alpn {
        Some(b"h2") => Protocol::Http2,
        _ => Protocol::Http1,
    }
}

/// Waits until a plain connection's first bytes decide its protocol, leaving them unread.
/// `None` when the client closed it without sending a byte. A client that sends part of the
/// preface and then nothing waits here: the caller bounds the wait (the header-read timeout).
/// A client that sends part of the preface and closes its side is handed to HTTP/1.1, which
/// reads the fragment and closes.
pub async fn peek_protocol(stream: &TcpStream) -> io::Result<Option<Protocol>> {
    let mut first = [0u8; H2_PREFACE.len()];
    let mut seen = 0;
    loop {
        let ready = stream.ready(Interest::READABLE).await?;
        // A peek leaves the socket readable, so waiting for readiness again would return at
        // once: when no byte arrived since the last look, the closure says "would block",
        // which clears the readiness; a byte arriving after the peek raises it again (the
        // peek runs after the readiness was read, so no byte can slip between the two).
        let peeked = stream.try_io(Interest::READABLE, || {
            let (n, _) = rustix::net::recv(stream, &mut first[..], rustix::net::RecvFlags::PEEK)?;
            if n == seen && n > 0 && !ready.is_read_closed() {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(n)
            }
        });
        let n = match peeked {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(None);
        }
        seen = n;
        match sniff(&first[..n]) {
            Sniffed::Decided(p) => return Ok(Some(p)),
            // Closed after a fragment of the preface: no byte will come to complete it.
            Sniffed::Undecided if ready.is_read_closed() => return Ok(Some(Protocol::Http1)),
            Sniffed::Undecided => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_preface_and_what_is_not() {
        assert_eq!(sniff(b""), Sniffed::Undecided);
        assert_eq!(sniff(b"PRI * HT"), Sniffed::Undecided);
        assert_eq!(sniff(H2_PREFACE), Sniffed::Decided(Protocol::Http2));
        let mut more = H2_PREFACE.to_vec();
        more.extend_from_slice(b"\0\0\0\x04");
        assert_eq!(sniff(&more), Sniffed::Decided(Protocol::Http2));
        assert_eq!(
            sniff(b"GET / HTTP/1.1\r\n"),
            Sniffed::Decided(Protocol::Http1)
        );
        assert_eq!(sniff(b"PRI * HTTP/1.1"), Sniffed::Decided(Protocol::Http1));
        assert_eq!(sniff(b"POST"), Sniffed::Decided(Protocol::Http1));
    }

    #[test]
    fn alpn() {
        assert_eq!(from_alpn(Some(b"h2")), Protocol::Http2);
        assert_eq!(from_alpn(Some(b"http/1.1")), Protocol::Http1);
        assert_eq!(from_alpn(Some(b"h2c")), Protocol::Http1);
        assert_eq!(from_alpn(None), Protocol::Http1);
    }

    /// The decision waits for bytes still to come, decides when they come, and leaves every
    /// byte it looked at in the socket — observed poll by poll, with no timing involved.
    #[tokio::test]
    async fn peeking_waits_for_more_and_takes_no_byte() {
        use std::future::Future;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        // "P" is the preface's first byte: undecided.
        client.write_all(b"P").await.unwrap();
        server.readable().await.unwrap();
        {
            let mut peek = std::pin::pin!(peek_protocol(&server));
            let waiting = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(peek.as_mut().poll(cx).is_pending())
            })
            .await;
            assert!(waiting, "decided on a proper prefix of the preface");
            client.write_all(b"OST / HTTP/1.1\r\n").await.unwrap();
            assert_eq!(peek.await.unwrap(), Some(Protocol::Http1));
        }
        let mut first = [0u8; 5];
        server.read_exact(&mut first).await.unwrap();
        assert_eq!(
            &first, b"POST ",
            "the bytes looked at are still there for hyper"
        );
    }

    proptest! {
        /// Any first bytes, seen in any number of growing looks: never a panic, and the
        /// verdict is the preface's — HTTP/2 exactly when they begin with it, undecided
        /// exactly when they are a proper prefix of it, and a decision never changes.
        #[test]
        fn arbitrary_first_bytes(
            bytes in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..64),
                (0..=24usize, proptest::collection::vec(any::<u8>(), 0..16))
                    .prop_map(|(k, tail)| [&H2_PREFACE[..k], &tail[..]].concat()),
            ],
            cuts in proptest::collection::vec(0..64usize, 0..6),
        ) {
            let verdict = sniff(&bytes);
            let expected = if bytes.starts_with(H2_PREFACE) {
                Sniffed::Decided(Protocol::Http2)
            } else if H2_PREFACE.starts_with(&bytes) {
                Sniffed::Undecided
            } else {
                Sniffed::Decided(Protocol::Http1)
            };
            prop_assert_eq!(verdict, expected);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut decided = None;
            for c in cuts {
                match sniff(&bytes[..c]) {
                    Sniffed::Decided(p) => {
                        prop_assert!(decided.is_none_or(|d| d == p));
                        decided = Some(p);
                        prop_assert_eq!(verdict, Sniffed::Decided(p));
                    }
                    Sniffed::Undecided => prop_assert!(decided.is_none()),
                }
            }
        }
    }
}
