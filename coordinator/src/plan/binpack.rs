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

/// Spreads items over `bins` bins of about equal bytes (largest item first into the
/// emptiest bin); no bin is empty, so there are fewer bins when there are fewer items.
pub fn balanced<T>(mut items: Vec<T>, size: impl Fn(&T) -> u64, bins: usize) -> Vec<Vec<T>> {
    let bins = bins.clamp(1, items.len().max(1));
    items.sort_by_key(|i| std::cmp::Reverse(size(i)));
    let mut out: Vec<(u64, Vec<T>)> = (0..bins).map(|_| (0, Vec::new())).collect();
    for item in items {
        let s = size(&item);
        if let Some(bin) = out.iter_mut().min_by_key(|(bytes, _)| *bytes) {
            bin.0 += s;
            bin.1.push(item);
        }
    }
    out.into_iter()
        .map(|(_, b)| b)
        .filter(|b| !b.is_empty())
        .collect()
}

/// Tasks for `total` bytes on `slots` slots: as [`task_bytes`] sizes them, rounded up to a
/// multiple of the slots so that the last round of tasks keeps every slot busy.
pub fn task_count(total: u64, slots: u32) -> usize {
    let slots = u64::from(slots.max(1));
    let n = ((total as f64 / task_bytes(total, slots as u32) as f64).round() as u64).max(1);
    n.div_ceil(slots).saturating_mul(slots) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_bins_even_out_bytes_and_fill_every_slot() {
        let bins = balanced(vec![7u64; 20], |s| *s, 4);
        assert_eq!(bins.len(), 4);
        assert!(bins.iter().all(|b| b.len() == 5));
        let bins = balanced(vec![10u64, 1, 1, 1, 9], |s| *s, 2);
        let sums: Vec<u64> = bins.iter().map(|b| b.iter().sum()).collect();
        assert_eq!(sums, vec![11, 11]);
        assert_eq!(balanced(vec![1u64], |s| *s, 8).len(), 1);
        // 138 MB on 2 slots: 34.5 MB per task would be 4 tasks; a multiple of 2.
        assert_eq!(task_count(138 << 20, 2), 4);
        assert_eq!(task_count(150 << 20, 2), 4);
        assert_eq!(task_count(1, 3), 3);
    }

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
