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
/// microseconds), as Spark means them (and without the nanosecond range limit), and with
/// `narrow_decimals`, decimals stored as 32-bit (64-bit) integers read as `Decimal32`
/// (`Decimal64`) where that is the type their `Decimal128` travels in
/// ([`crate::exchange::narrow_type`]): the stored integers as they are, not widened.
pub(super) async fn parquet_metadata(
    store: Arc<dyn ObjectStore>,
    path: Path,
    uri: &str,
    file_size: Option<u64>,
    narrow_decimals: bool,
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
    if roots.len() != meta.schema().fields().len() {
        return Ok((reader, meta));
    }
    let read_as = |(t, f): (
        &parquet::schema::types::TypePtr,
        &arrow::datatypes::FieldRef,
    )|
     -> Option<DataType> {
        if !t.is_primitive() {
            return None;
        }
        match t.get_physical_type() {
            PhysicalType::INT96 => Some(DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("UTC".into()),
            )),
            // Only where the narrow type is the stored width (decoded without conversion).
            physical if narrow_decimals => {
                crate::exchange::narrow_type(f.data_type()).filter(|n| {
                    matches!(
                        (physical, n),
                        (PhysicalType::INT32, DataType::Decimal32(..))
                            | (PhysicalType::INT64, DataType::Decimal64(..))
                    )
                })
            }
            _ => None,
        }
    };
    let types: Vec<Option<DataType>> = roots
        .iter()
        .zip(meta.schema().fields())
        .map(read_as)
        .collect();
    if types.iter().all(Option::is_none) {
        return Ok((reader, meta));
    }
    let fields: Vec<Field> = meta
        .schema()
        .fields()
        .iter()
        .zip(types)
        .map(|(f, t)| match t {
            Some(t) => f.as_ref().clone().with_data_type(t),
            None => f.as_ref().clone(),
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
    let (_, meta) =
        parquet_metadata(store, path, file.uri.as_str(), Some(file.size_bytes), false).await?;
    Ok(meta)
}
