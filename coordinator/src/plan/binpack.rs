//! Packing work (source splits, data files) into tasks by bytes.

/// Smallest and largest amount of input bytes one task reads.
pub const MIN_TASK_BYTES: u64 = 8 << 20;
pub const MAX_TASK_BYTES: u64 = 256 << 20;

/// Bytes per task for `total` input bytes on `slots` task slots: about two tasks per slot,
/// within [`MIN_TASK_BYTES`, `MAX_TASK_BYTES`].
pub fn task_bytes(total: u64, slots: u32) -> u64 {
    (total / (u64::from(slots.max(1)) * 2)).clamp(MIN_TASK_BYTES, MAX_TASK_BYTES)
}

/// Groups items, in order, into consecutive bins of at most `max_bytes` each (an item larger
/// than that gets a bin of its own). No bin is empty.
pub fn consecutive<T>(items: Vec<T>, size: impl Fn(&T) -> u64, max_bytes: u64) -> Vec<Vec<T>> {
    let mut bins: Vec<Vec<T>> = Vec::new();
    let mut acc = 0u64;
    for item in items {
        let s = size(&item);
        match bins.last_mut() {
            Some(bin) if acc + s <= max_bytes || bin.is_empty() => {
                acc += s;
                bin.push(item);
            }
            _ => {
                acc = s;
                bins.push(vec![item]);
            }
        }
    }
    bins
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_consecutive_and_bounded() {
        let bins = consecutive(vec![3u64, 4, 2, 10, 1, 1], |s| *s, 7);
        assert_eq!(bins, vec![vec![3, 4], vec![2], vec![10], vec![1, 1]]);
        assert!(consecutive(Vec::<u64>::new(), |s| *s, 7).is_empty());
        assert_eq!(consecutive(vec![0u64, 0], |s| *s, 0), vec![vec![0, 0]]);
    }

    #[test]
    fn task_sizes_follow_slots_within_bounds() {
        assert_eq!(task_bytes(0, 4), MIN_TASK_BYTES);
        assert_eq!(task_bytes(1 << 40, 1), MAX_TASK_BYTES);
        assert_eq!(task_bytes(400 << 20, 2), 100 << 20);
    }
}
