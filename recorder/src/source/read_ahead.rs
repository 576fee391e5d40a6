//! A connection read in large chunks for a reader that asks for small ones.
//!
//! HTTP/2 under tonic (h2) reads its connection into a buffer of a few KiB: a Hubble stream of
//! 1M flows (~1 GB) took ~95,000 `recvfrom` calls on the node's unix socket, 5% of the
//! recorder's CPU with the wakeups around them (perf, `make bench-hubble`). Reading the socket
//! into a buffer of [`READ_AHEAD`] bytes and serving h2's reads from it costs one copy of
//! memory instead of most of those calls.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the connection at once: about what a unix socket holds by default
/// (`net.core.wmem_default`, 208 KiB), so one read usually takes all that is waiting.
pub const READ_AHEAD: usize = 256 << 10;

/// `inner`, read through a buffer; writes go straight through.
pub struct ReadAhead<S> {
    inner: S,
    buffer: Box<[u8]>,
    /// Bytes of `buffer` read from `inner` and not yet handed out: `start..end`.
    start: usize,
    end: usize,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S, capacity: usize) -> ReadAhead<S> {
        ReadAhead {
            inner,
            buffer: vec![0; capacity.max(1)].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.start == this.end {
            // A reader asking for as much as the buffer holds gains nothing from it.
            if out.remaining() >= this.buffer.len() {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            let mut fill = ReadBuf::new(&mut this.buffer);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut fill))?;
            // Nothing filled is the end of the stream, handed on as an empty read.
            this.end = fill.filled().len();
            this.start = 0;
        }
        let n = (this.end - this.start).min(out.remaining());
        out.put_slice(&this.buffer[this.start..this.start + n]);
        this.start += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, bytes)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A reader that counts the reads it is asked for.
    struct Counted<R> {
        inner: R,
        reads: usize,
    }

    impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.reads += 1;
            Pin::new(&mut self.inner).poll_read(cx, out)
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// Reads `reader` to its end in reads of at most `chunk` bytes.
    async fn read_in(reader: &mut (impl AsyncRead + Unpin), chunk: usize) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buf = vec![0; chunk];
        loop {
            let n = reader.read(&mut buf).await.unwrap();
            if n == 0 {
                return all;
            }
            all.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn small_reads_are_served_from_few_large_ones_with_every_byte_in_order() {
        let data = pattern(100_000);
        let mut reader = ReadAhead::new(
            Counted {
                inner: &data[..],
                reads: 0,
            },
            16 << 10,
        );
        assert_eq!(read_in(&mut reader, 1000).await, data);
        // 100,000 bytes through a 16 KiB buffer: 7 reads and the one that found the end,
        // where 1000-byte reads straight from the source would have taken 101.
        assert_eq!(reader.inner.reads, 8);
    }

    #[tokio::test]
    async fn reads_as_large_as_the_buffer_go_straight_through() {
        let data = pattern(50_000);
        let mut reader = ReadAhead::new(
            Counted {
                inner: &data[..],
                reads: 0,
            },
            4096,
        );
        assert_eq!(read_in(&mut reader, 20_000).await, data);
        assert_eq!(reader.inner.reads, 4);
    }

    #[tokio::test]
    async fn a_stream_in_pieces_arrives_whole_and_writes_pass_through() {
        let (near, mut far) = tokio::io::duplex(1 << 10);
        let mut near = ReadAhead::new(near, READ_AHEAD);
        let data = pattern(300_000);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            far.write_all(&sent).await.unwrap();
            let mut reply = [0; 5];
            far.read_exact(&mut reply).await.unwrap();
            reply
        });
        let mut received = vec![0; data.len()];
        near.read_exact(&mut received).await.unwrap();
        assert_eq!(received, data);
        near.write_all(b"thank").await.unwrap();
        assert_eq!(&writer.await.unwrap(), b"thank");
    }
}
