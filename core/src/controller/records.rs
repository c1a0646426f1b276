//! Read-modify-write of one record, the way every writer of the Store does it.

use crate::model::{FunctionName, FunctionRecord};
use crate::ports::{Store, StoreError};

/// How often a writer reads again after a conflicting write before it gives up.
const TRIES: usize = 16;

/// Reads `name`'s record, lets `change` edit it, and writes it back with a
/// compare-and-set on the revision it read; on a conflict (someone else wrote
/// in between) it reads again and calls `change` again, so `change` must be a
/// pure function of the record it is given. `change` returns `false` to write
/// nothing (already as wanted, or no longer applicable).
///
/// Returns the record as written (or as read, when nothing was written);
/// `None` when there is no record.
pub(crate) async fn update(
    store: &dyn Store,
    name: &FunctionName,
    mut change: impl FnMut(&mut FunctionRecord) -> bool,
) -> Result<Option<FunctionRecord>, StoreError> {
    for _ in 0..TRIES {
        let Some(mut record) = store.get(name).await? else { return Ok(None) };
        let expected = record.revision;
        if !change(&mut record) {
            return Ok(Some(record));
        }
        match store.compare_and_set(Some(expected), record.clone()).await {
            Ok(revision) => {
                record.revision = revision;
                return Ok(Some(record));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Unavailable(format!("`{name}` kept changing under concurrent writes; try again")))
}
