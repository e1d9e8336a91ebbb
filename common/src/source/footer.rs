//! Parquet footers: reading them (concurrently, with one prefetch) and the object reader
//! the Parquet reader uses.

use super::*;

/// Parquet input from an object store: ranged reads of one object.
pub struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    file_size: u64,
}

impl ObjectReader {
    /// A reader of the object at `path`, whose size is `file_size` bytes.
    pub fn new(store: Arc<dyn ObjectStore>, path: Path, file_size: u64) -> Self {
        Self {
            store,
            path,
            file_size,
        }
    }
}

pub(super) fn store_err(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(store_err)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(store_err)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let file_size = self.file_size;
            let metadata = ParquetMetaDataReader::new()
                .with_metadata_options(options.map(|o| o.metadata_options().clone()))
                .with_prefetch_hint(Some(FOOTER_PREFETCH_BYTES))
                .load_and_finish(self, file_size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// The size in bytes and the row count (from its footer) of the Parquet file at `path`.
pub async fn parquet_size_and_rows(store: Arc<dyn ObjectStore>, path: Path) -> Result<(u64, i64)> {
    let size = store.head(&path).await?.size;
    let uri = path.to_string();
    let mut reader = ObjectReader::new(store, path, size);
    let metadata = ParquetMetaDataReader::new()
        .with_prefetch_hint(Some(FOOTER_PREFETCH_BYTES))
        .load_and_finish(&mut reader, size)
        .await
        .map_err(|e| parquet_err(&uri, e))?;
    Ok((size, metadata.file_metadata().num_rows()))
}

/// Reads the footer of a Parquet file, with INT96 columns read as `timestamp` (UTC,
/// microseconds), as Spark means them (and without the nanosecond range limit).
pub(super) async fn parquet_metadata(
    store: Arc<dyn ObjectStore>,
    path: Path,
    uri: &str,
    file_size: Option<u64>,
) -> Result<(ObjectReader, ArrowReaderMetadata)> {
    let file_size = match file_size {
        Some(size) => size,
        None => store.head(&path).await?.size,
    };
    let mut reader = ObjectReader {
        store,
        path,
        file_size,
    };
    let meta = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
        .await
        .map_err(|e| parquet_err(uri, e))?;
    let roots = meta.parquet_schema().root_schema().get_fields();
    let int96: Vec<usize> = roots
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_primitive() && t.get_physical_type() == PhysicalType::INT96)
        .map(|(i, _)| i)
        .collect();
    if int96.is_empty() || roots.len() != meta.schema().fields().len() {
        return Ok((reader, meta));
    }
    let fields: Vec<Field> = meta
        .schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if int96.contains(&i) {
                f.as_ref().clone().with_data_type(DataType::Timestamp(
                    TimeUnit::Microsecond,
                    Some("UTC".into()),
                ))
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let hint = Arc::new(Schema::new(fields).with_metadata(meta.schema().metadata().clone()));
    let meta = ArrowReaderMetadata::try_new(
        meta.metadata().clone(),
        ArrowReaderOptions::new().with_schema(hint),
    )
    .map_err(|e| parquet_err(uri, e))?;
    Ok((reader, meta))
}

pub(super) async fn file_metadata(file: &SourceFile) -> Result<ArrowReaderMetadata> {
    let (store, path) = store_for(&file.uri)?;
    let (_, meta) = parquet_metadata(store, path, file.uri.as_str(), Some(file.size_bytes)).await?;
    Ok(meta)
}
