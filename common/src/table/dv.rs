//! Deletion vectors: reading them (inline, relative or absolute storage) and skipping the rows
//! they delete while a data file streams in.
//!
//! Writing: [`DvFile`] gathers the vectors of one task attempt into one file under a directory
//! named after the attempt (so that an attempt's uncommitted vectors are found by name, as its
//! data files are); [`live_to_physical`] turns positions among a file's live rows into row
//! indexes of the file.
//!
//! Format (Delta protocol, "Deletion Vector Format"): a DV file starts with a format version
//! byte (1); each vector in it sits at its descriptor's `offset` as a 4-byte big-endian size,
//! then `size` bytes of data, then a big-endian CRC-32 of that data. The data is the magic
//! number 1681511377 (little-endian) followed by a 64-bit roaring bitmap in the portable
//! serialization. Inline vectors hold the same data, Z85-encoded, in the descriptor.

use std::sync::Arc;

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::{GetOptions, GetRange, ObjectStore};
use roaring::RoaringTreemap;
use url::Url;

use crate::storage::{join_url, store_for};
use crate::task::DeletionVector;
use crate::{Error, Result};

const MAGIC: u32 = 1_681_511_377;

fn corrupt(what: &str, reason: impl std::fmt::Display) -> Error {
    Error::CorruptFile {
        path: what.to_string(),
        reason: format!("deletion vector: {reason}"),
    }
}

/// The location of a stored (not inline) vector, relative to the table root or absolute.
fn stored_location(dv: &DeletionVector, table_url: &Url) -> Result<Option<Url>> {
    match dv.storage_type.as_str() {
        "i" => Ok(None),
        "p" => Url::parse(&dv.path_or_inline_dv)
            .map(Some)
            .map_err(|e| corrupt(&dv.path_or_inline_dv, format!("bad absolute path: {e}"))),
        "u" => {
            let (prefix, name) = relative_parts(&dv.path_or_inline_dv)?;
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            join_url(table_url, &rel).map(Some)
        }
        other => Err(corrupt(
            &dv.path_or_inline_dv,
            format!("unknown storage type `{other}`"),
        )),
    }
}

/// A relative (`u`) location: its prefix (a directory, possibly empty) and the file name
/// its 20-character Z85 id stands for (`deletion_vector_<uuid>.bin`).
fn relative_parts(s: &str) -> Result<(&str, String)> {
    if s.len() < 20 || !s.is_char_boundary(s.len() - 20) {
        return Err(corrupt(s, "relative path shorter than its 20-character id"));
    }
    let (prefix, id) = s.split_at(s.len() - 20);
    let bytes = z85::decode(id).map_err(|e| corrupt(s, format!("bad id: {e}")))?;
    let uuid = uuid::Uuid::from_slice(&bytes).map_err(|e| corrupt(s, format!("bad id: {e}")))?;
    Ok((prefix, format!("deletion_vector_{uuid}.bin")))
}

/// The file name of a stored vector with a relative location (`deletion_vector_<uuid>.bin`).
pub fn file_name(dv: &DeletionVector) -> Option<String> {
    if dv.storage_type != "u" {
        return None;
    }
    relative_parts(&dv.path_or_inline_dv)
        .ok()
        .map(|(_, name)| name)
}

/// The directory (relative to the table root, possibly empty) a stored vector with a relative
/// location (`u`) is in.
pub fn stored_dir(dv: &DeletionVector) -> Option<&str> {
    if dv.storage_type != "u" {
        return None;
    }
    relative_parts(&dv.path_or_inline_dv)
        .ok()
        .map(|(dir, _)| dir)
}

/// The same vector with a relative location (`u`) turned into an absolute one (`p`), so that
/// it can be read without knowing the table root.
pub fn resolve(dv: &DeletionVector, table_url: &Url) -> Result<DeletionVector> {
    Ok(match stored_location(dv, table_url)? {
        Some(url) if dv.storage_type == "u" => DeletionVector {
            storage_type: "p".into(),
            path_or_inline_dv: url.to_string(),
            ..dv.clone()
        },
        _ => dv.clone(),
    })
}

/// Parses the vector's data (magic number and bitmap).
fn parse_bitmap(what: &str, data: &[u8]) -> Result<RoaringTreemap> {
    if data.len() < 4 {
        return Err(corrupt(what, "shorter than its magic number"));
    }
    let magic = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    if magic != MAGIC {
        return Err(corrupt(what, format!("unexpected magic number {magic}")));
    }
    RoaringTreemap::deserialize_from(&data[4..]).map_err(|e| corrupt(what, e))
}

/// Reads the rows a deletion vector deletes (row indexes within its data file).
pub async fn load(dv: &DeletionVector, table_url: &Url) -> Result<RoaringTreemap> {
    let bitmap = match stored_location(dv, table_url)? {
        None => {
            let mut data = z85::decode(&dv.path_or_inline_dv)
                .map_err(|e| corrupt("inline vector", format!("bad encoding: {e}")))?;
            // The encoding pads to a multiple of 4 bytes; the descriptor has the true size.
            data.truncate(usize::try_from(dv.size_in_bytes).unwrap_or(data.len()));
            parse_bitmap("inline vector", &data)?
        }
        Some(url) => {
            let what = url.to_string();
            let (store, path) = store_for(&url)?;
            let offset = dv.offset.unwrap_or(1).max(0) as u64;
            let size =
                u64::try_from(dv.size_in_bytes).map_err(|_| corrupt(&what, "negative size"))?;
            // Size field, data, CRC.
            let range = offset..offset + 4 + size + 4;
            let bytes = get_range(&store, &path, range.clone())
                .await
                .map_err(|e| match e {
                    object_store::Error::NotFound { .. } => {
                        corrupt(&what, "the deletion vector file is missing")
                    }
                    e => Error::ObjectStore(e),
                })?;
            if bytes.len() as u64 != range.end - range.start {
                return Err(corrupt(&what, "file shorter than the descriptor says"));
            }
            let stored_size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            if u64::from(stored_size) != size {
                return Err(corrupt(
                    &what,
                    format!("size {stored_size} in the file, {size} in the log"),
                ));
            }
            let data = &bytes[4..4 + size as usize];
            let crc_at = 4 + size as usize;
            let crc = u32::from_be_bytes([
                bytes[crc_at],
                bytes[crc_at + 1],
                bytes[crc_at + 2],
                bytes[crc_at + 3],
            ]);
            if crc32fast::hash(data) != crc {
                return Err(corrupt(&what, "checksum mismatch"));
            }
            parse_bitmap(&what, data)?
        }
    };
    if bitmap.len() != dv.cardinality.max(0) as u64 {
        return Err(corrupt(
            &dv.path_or_inline_dv,
            format!(
                "holds {} rows, the log says {}",
                bitmap.len(),
                dv.cardinality
            ),
        ));
    }
    Ok(bitmap)
}

/// Rows as tasks report them: a `RoaringTreemap` in its portable serialization.
pub fn serialize_rows(rows: &RoaringTreemap) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.serialized_size());
    // Writing into a Vec does not fail.
    let _ = rows.serialize_into(&mut out);
    out
}

/// Reads [`serialize_rows`]' form back.
pub fn deserialize_rows(bytes: &[u8]) -> Result<RoaringTreemap> {
    if bytes.is_empty() {
        return Ok(RoaringTreemap::new());
    }
    RoaringTreemap::deserialize_from(bytes)
        .map_err(|e| Error::internal(format!("bad row bitmap in a task report: {e}")))
}

/// Row indexes in a file of the rows at positions `live` among its live rows, given the rows
/// its deletion vector already deletes (`deleted`): the k-th live row is the k-th row index
/// not in `deleted`.
pub fn live_to_physical(live: &RoaringTreemap, deleted: &RoaringTreemap) -> RoaringTreemap {
    if deleted.is_empty() {
        return live.clone();
    }
    let mut out = RoaringTreemap::new();
    let mut del = deleted.iter().peekable();
    let mut skipped = 0u64;
    for k in live.iter() {
        while let Some(&d) = del.peek() {
            if d > k + skipped {
                break;
            }
            skipped += 1;
            del.next();
        }
        out.insert(k + skipped);
    }
    out
}

/// One deletion vector file being built: a format version byte, then each vector as its size,
/// its data (magic number and bitmap) and its CRC-32.
pub struct DvFile {
    /// Directory of the file under the table root (the `u` descriptor's prefix).
    dir: String,
    uuid: uuid::Uuid,
    bytes: Vec<u8>,
}

impl DvFile {
    /// A new file in directory `dir` (relative to the table root; plain characters only).
    pub fn new(dir: &str) -> Self {
        Self {
            dir: dir.to_string(),
            uuid: uuid::Uuid::new_v4(),
            bytes: vec![1],
        }
    }

    /// Appends a vector deleting `rows`; returns its descriptor.
    pub fn push(&mut self, rows: &RoaringTreemap) -> Result<DeletionVector> {
        let mut data = MAGIC.to_le_bytes().to_vec();
        rows.serialize_into(&mut data)
            .map_err(|e| Error::internal(format!("cannot serialize a deletion vector: {e}")))?;
        let too_big = || Error::internal("deletion vector file over 2 GiB");
        let offset = i32::try_from(self.bytes.len()).map_err(|_| too_big())?;
        let size = u32::try_from(data.len()).map_err(|_| too_big())?;
        self.bytes.extend(size.to_be_bytes());
        self.bytes.extend(&data);
        self.bytes.extend(crc32fast::hash(&data).to_be_bytes());
        Ok(DeletionVector {
            storage_type: "u".into(),
            path_or_inline_dv: format!("{}{}", self.dir, z85::encode(self.uuid.as_bytes())),
            offset: Some(offset),
            size_in_bytes: i32::try_from(size).map_err(|_| too_big())?,
            cardinality: i64::try_from(rows.len()).map_err(|_| too_big())?,
        })
    }

    /// The file's path relative to the table root.
    pub fn relative_path(&self) -> String {
        format!("{}/deletion_vector_{}.bin", self.dir, self.uuid)
    }

    /// Writes the file under `table_url`; returns its relative path and size.
    pub async fn write(self, table_url: &Url) -> Result<(String, u64)> {
        let rel = self.relative_path();
        let (store, path) = store_for(&join_url(table_url, &rel)?)?;
        let size = self.bytes.len() as u64;
        object_store::ObjectStoreExt::put(&store, &path, self.bytes.into())
            .await
            .map_err(Error::ObjectStore)?;
        Ok((rel, size))
    }
}

async fn get_range(
    store: &Arc<dyn ObjectStore>,
    path: &object_store::path::Path,
    range: std::ops::Range<u64>,
) -> std::result::Result<bytes::Bytes, object_store::Error> {
    store
        .get_opts(
            path,
            GetOptions {
                range: Some(GetRange::Bounded(range)),
                ..Default::default()
            },
        )
        .await?
        .bytes()
        .await
}

/// Drops the deleted rows from a stream of a file's batches. `ranges` are the row ranges
/// `(first row, row count)` of the file that the stream covers, in order (all row groups, or
/// the selected ones), so that each streamed row's index in the file is known.
pub fn skip_deleted(
    stream: BoxStream<'static, Result<RecordBatch>>,
    deleted: RoaringTreemap,
    ranges: Vec<(u64, u64)>,
) -> BoxStream<'static, Result<RecordBatch>> {
    let mut cursor = RowCursor {
        ranges,
        range: 0,
        offset: 0,
    };
    stream
        .map(move |b| {
            let b = b?;
            let keep: BooleanArray = (0..b.num_rows())
                .map(|_| cursor.next().map(|row| !deleted.contains(row)))
                .collect::<Option<BooleanArray>>()
                .ok_or_else(|| Error::internal("more rows streamed than the file's row ranges"))?;
            if keep.true_count() == b.num_rows() {
                Ok(b)
            } else {
                Ok(filter_record_batch(&b, &keep)?)
            }
        })
        .boxed()
}

/// Walks the row indexes of a list of row ranges.
struct RowCursor {
    ranges: Vec<(u64, u64)>,
    range: usize,
    offset: u64,
}

impl Iterator for RowCursor {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        loop {
            let (start, len) = *self.ranges.get(self.range)?;
            if self.offset < len {
                self.offset += 1;
                return Some(start + self.offset - 1);
            }
            self.range += 1;
            self.offset = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatchOptions};
    use arrow::datatypes::{DataType, Field, Schema};

    fn encode(rows: &[u64]) -> Vec<u8> {
        let bitmap: RoaringTreemap = rows.iter().copied().collect();
        let mut data = MAGIC.to_le_bytes().to_vec();
        bitmap.serialize_into(&mut data).unwrap();
        data
    }

    #[tokio::test]
    async fn stored_and_inline_vectors_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let table = Url::from_directory_path(dir.path()).unwrap();
        let data = encode(&[0, 5, 1 << 33]);
        // A file holding one vector at offset 1, written as the protocol describes.
        let mut file = vec![1u8];
        file.extend((data.len() as u32).to_be_bytes());
        file.extend(&data);
        file.extend(crc32fast::hash(&data).to_be_bytes());
        let uuid = uuid::Uuid::new_v4();
        let id = z85::encode(uuid.as_bytes());
        std::fs::create_dir_all(dir.path().join("ab")).unwrap();
        std::fs::write(
            dir.path().join(format!("ab/deletion_vector_{uuid}.bin")),
            &file,
        )
        .unwrap();
        let dv = DeletionVector {
            storage_type: "u".into(),
            path_or_inline_dv: format!("ab{id}"),
            offset: Some(1),
            size_in_bytes: data.len() as i32,
            cardinality: 3,
        };
        let rows: Vec<u64> = load(&dv, &table).await.unwrap().iter().collect();
        assert_eq!(rows, vec![0, 5, 1 << 33]);

        // A wrong cardinality or a flipped byte is a corrupt file.
        let e = load(
            &DeletionVector {
                cardinality: 2,
                ..dv.clone()
            },
            &table,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("the log says 2"), "{e}");
        file[10] ^= 0xff;
        std::fs::write(
            dir.path().join(format!("ab/deletion_vector_{uuid}.bin")),
            &file,
        )
        .unwrap();
        let e = load(&dv, &table).await.unwrap_err();
        assert!(matches!(e, Error::CorruptFile { .. }), "{e}");

        // Inline: the data itself, Z85-encoded (its length padded to a multiple of 4).
        let mut inline = encode(&[2, 3]);
        while !inline.len().is_multiple_of(4) {
            inline.push(0);
        }
        let dv = DeletionVector {
            storage_type: "i".into(),
            path_or_inline_dv: z85::encode(&inline),
            offset: None,
            size_in_bytes: inline.len() as i32,
            cardinality: 2,
        };
        let rows: Vec<u64> = load(&dv, &table).await.unwrap().iter().collect();
        assert_eq!(rows, vec![2, 3]);
    }

    #[tokio::test]
    async fn written_vectors_read_back_and_live_positions_map_to_rows() {
        let dir = tempfile::tempdir().unwrap();
        let table = Url::from_directory_path(dir.path()).unwrap();
        let mut file = DvFile::new("part-j-s1-t0-a0-dv");
        let a: RoaringTreemap = [0u64, 7, 1 << 20].into_iter().collect();
        let b: RoaringTreemap = (100u64..5000).collect();
        let (da, db) = (file.push(&a).unwrap(), file.push(&b).unwrap());
        let (rel, _) = file.write(&table).await.unwrap();
        assert!(
            rel.starts_with("part-j-s1-t0-a0-dv/deletion_vector_"),
            "{rel}"
        );
        assert_eq!(da.offset, Some(1));
        assert_eq!(load(&da, &table).await.unwrap(), a);
        assert_eq!(load(&db, &table).await.unwrap(), b);

        // Rows 1 and 3 already deleted: live positions 0, 1, 2 are rows 0, 2, 4.
        let deleted: RoaringTreemap = [1u64, 3].into_iter().collect();
        let live: RoaringTreemap = [0u64, 1, 2, 5].into_iter().collect();
        let rows: Vec<u64> = live_to_physical(&live, &deleted).iter().collect();
        assert_eq!(rows, vec![0, 2, 4, 7]);
        // Seeded: the mapping agrees with walking the rows one by one.
        let mut rng = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let deleted: RoaringTreemap = (0..2000u64).filter(|_| next() % 3 == 0).collect();
        let live_rows: Vec<u64> = (0..2000u64).filter(|r| !deleted.contains(*r)).collect();
        let picked: RoaringTreemap = (0..live_rows.len() as u64)
            .filter(|_| next() % 4 == 0)
            .collect();
        let want: RoaringTreemap = picked.iter().map(|k| live_rows[k as usize]).collect();
        assert_eq!(live_to_physical(&picked, &deleted), want);
        assert_eq!(deserialize_rows(&serialize_rows(&want)).unwrap(), want);
    }

    #[tokio::test]
    async fn deleted_rows_are_skipped_across_batches_and_ranges() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        // Row groups [0, 4) and [10, 13) selected; rows 1, 3 and 11 deleted.
        let batch = |vals: Vec<i64>| {
            RecordBatch::try_new_with_options(
                schema.clone(),
                vec![Arc::new(Int64Array::from(vals))],
                &RecordBatchOptions::new(),
            )
            .map_err(Error::from)
        };
        let input = futures::stream::iter(vec![
            batch(vec![0, 1, 2]),
            batch(vec![3, 10]),
            batch(vec![11, 12]),
        ])
        .boxed();
        let deleted: RoaringTreemap = [1u64, 3, 11].into_iter().collect();
        let out: Vec<i64> = skip_deleted(input, deleted, vec![(0, 4), (10, 3)])
            .map(|b| b.unwrap())
            .collect::<Vec<_>>()
            .await
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(out, vec![0, 2, 10, 12]);
    }
}
