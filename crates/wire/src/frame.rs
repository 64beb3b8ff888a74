//! Length-prefixed frames: a big-endian `i32` size, then that many bytes.
//!
//! The size is checked against a limit *before* any buffer grows, so a peer cannot make us
//! allocate by lying in the prefix (Kafka's `socket.request.max.bytes`, 100 MiB by default).

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Kafka's default `socket.request.max.bytes`.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;

/// Why a frame could not be read; each one closes the connection.
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("frame size {0} is negative or zero")]
    InvalidSize(i32),
    #[error("frame size {size} exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads frames from one socket half, reusing one buffer.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buffer: BytesMut,
    max_frame_bytes: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max_frame_bytes: usize) -> Self {
        Self {
            inner,
            buffer: BytesMut::with_capacity(64 * 1024),
            max_frame_bytes,
        }
    }

    /// Returns the next frame's payload, `Ok(None)` on a clean EOF between frames.
    pub async fn read_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = self.try_split_frame()? {
                return Ok(Some(frame));
            }
            if self.buffer.capacity() - self.buffer.len() < 4096 {
                self.buffer.reserve(64 * 1024);
            }
            let read = self.inner.read_buf(&mut self.buffer).await?;
            if read == 0 {
                return if self.buffer.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
        }
    }

    fn try_split_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some(Ok(prefix)) = self.buffer.get(..4).map(<[u8; 4]>::try_from) else {
            return Ok(None);
        };
        let size = i32::from_be_bytes(prefix);
        if size <= 0 {
            return Err(FrameError::InvalidSize(size));
        }
        let size = size as usize;
        if size > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                size,
                limit: self.max_frame_bytes,
            });
        }
        if self.buffer.len() < 4 + size {
            // Grow once to the announced size (already bounded above).
            self.buffer.reserve(4 + size - self.buffer.len());
            return Ok(None);
        }
        self.buffer.advance(4);
        Ok(Some(self.buffer.split_to(size).freeze()))
    }
}

/// Prepends the 4-byte size to `body` in place: `body` must start with 4 reserved bytes.
pub fn finish_frame(buf: &mut BytesMut) {
    let size = (buf.len().saturating_sub(4)) as i32;
    if let Some(prefix) = buf.get_mut(..4) {
        prefix.copy_from_slice(&size.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_frames_and_clean_eof() {
        let data: Vec<u8> = [&3i32.to_be_bytes()[..], b"abc", &1i32.to_be_bytes()[..], b"z"].concat();
        let mut reader = FrameReader::new(&data[..], 1024);
        assert_eq!(
            reader.read_frame().await.unwrap().unwrap(),
            Bytes::from_static(b"abc")
        );
        assert_eq!(
            reader.read_frame().await.unwrap().unwrap(),
            Bytes::from_static(b"z")
        );
        assert!(reader.read_frame().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn rejects_oversize_and_negative_before_allocating() {
        let data = i32::MAX.to_be_bytes();
        let mut reader = FrameReader::new(&data[..], 1024);
        assert!(matches!(
            reader.read_frame().await,
            Err(FrameError::TooLarge { .. })
        ));
        let data = (-5i32).to_be_bytes();
        let mut reader = FrameReader::new(&data[..], 1024);
        assert!(matches!(
            reader.read_frame().await,
            Err(FrameError::InvalidSize(-5))
        ));
    }

    #[tokio::test]
    async fn truncated_frame_is_an_error() {
        let data: Vec<u8> = [&10i32.to_be_bytes()[..], b"abc"].concat();
        let mut reader = FrameReader::new(&data[..], 1024);
        assert!(matches!(reader.read_frame().await, Err(FrameError::Truncated)));
    }
}
