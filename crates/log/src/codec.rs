//! Record-body codecs: the decompressed bytes of a batch's records and their recompression
//! with the same codec, through kafka-protocol's implementations (Kafka's framing for snappy and
//! lz4 included). Only compacted topics open batches: the key check on produce and the cleaner.
//! The hot path of other topics never comes here.

use bytes::BufMut;
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

use crate::batch::{BatchError, BatchView, Compression, HEADER_SIZE};

/// The records of `view`, uncompressed (borrowed when the batch is not compressed).
pub(crate) fn records_of<'a>(view: &BatchView<'a>) -> Result<std::borrow::Cow<'a, [u8]>, BatchError> {
    let body = view.as_bytes().get(HEADER_SIZE..).unwrap_or_default();
    let codec = view
        .compression()
        .ok_or(BatchError::Inconsistent("unknown compression codec"))?;
    if codec == Compression::None {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    decompress(codec, body).map(std::borrow::Cow::Owned)
}

/// Decompresses `body` written with `codec`.
pub(crate) fn decompress(codec: Compression, body: &[u8]) -> Result<Vec<u8>, BatchError> {
    let mut input: &[u8] = body;
    let take = |b: &mut bytes::Bytes| Ok(b.to_vec());
    let result = match codec {
        Compression::None => Ok(body.to_vec()),
        Compression::Gzip => <Gzip as Decompressor<&[u8]>>::decompress(&mut input, take),
        Compression::Snappy => <Snappy as Decompressor<&[u8]>>::decompress(&mut input, take),
        Compression::Lz4 => <Lz4 as Decompressor<&[u8]>>::decompress(&mut input, take),
        Compression::Zstd => <Zstd as Decompressor<&[u8]>>::decompress(&mut input, take),
    };
    result.map_err(|_| BatchError::MalformedRecords("cannot decompress records"))
}

/// Compresses `raw` records with `codec`, as a producer using that codec would.
pub(crate) fn compress(codec: Compression, raw: &[u8]) -> Result<Vec<u8>, BatchError> {
    let mut out: Vec<u8> = Vec::new();
    let put = |w: &mut bytes::BytesMut| {
        w.put_slice(raw);
        Ok(())
    };
    let result = match codec {
        Compression::None => {
            out.extend_from_slice(raw);
            Ok(())
        }
        Compression::Gzip => <Gzip as Compressor<Vec<u8>>>::compress(&mut out, put),
        Compression::Snappy => <Snappy as Compressor<Vec<u8>>>::compress(&mut out, put),
        Compression::Lz4 => <Lz4 as Compressor<Vec<u8>>>::compress(&mut out, put),
        Compression::Zstd => <Zstd as Compressor<Vec<u8>>>::compress(&mut out, put),
    };
    result.map_err(|_| BatchError::MalformedRecords("cannot compress records"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        let raw: Vec<u8> = (0..5_000u32).flat_map(|i| (i % 251).to_be_bytes()).collect();
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = compress(codec, &raw).unwrap();
            assert_eq!(decompress(codec, &packed).unwrap(), raw, "{codec:?}");
        }
        assert!(decompress(Compression::Gzip, b"not gzip").is_err());
    }
}
