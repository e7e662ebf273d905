//! Top-k selection: the `k` smallest distances, nearest first, ties by index.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A base vector and its distance to a query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    /// Index of the base vector.
    pub index: usize,
    /// Its distance (smaller is closer).
    pub distance: f32,
}

impl Neighbor {
    /// The search order, total: by distance (NaN after +inf, so it is never chosen over
    /// a real distance; -0 equals 0), then by index. Every search path sorts by it.
    pub fn cmp_nearest(&self, other: &Self) -> Ordering {
        let (a, b) = (self.distance, other.distance);
        a.is_nan()
            .cmp(&b.is_nan())
            .then(a.partial_cmp(&b).unwrap_or(Ordering::Equal))
            .then(self.index.cmp(&other.index))
    }
}

#[derive(Debug, Clone, Copy)]
struct HeapEntry(Neighbor);

impl PartialEq for HeapEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for HeapEntry {}
impl PartialOrd for HeapEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeapEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp_nearest(&other.0)
    }
}

/// A running selection of the `k` nearest: a bounded max-heap, O(log k) per candidate
/// that gets in, O(1) for the rest.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<HeapEntry>,
}

impl TopK {
    /// An empty selection of at most `k`.
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(1 << 16) + 1),
        }
    }

    /// Offers a candidate.
    #[inline]
    pub fn push(&mut self, index: usize, distance: f32) {
        if self.k == 0 {
            return;
        }
        let candidate = HeapEntry(Neighbor { index, distance });
        if self.heap.len() < self.k {
            self.heap.push(candidate);
        } else if let Some(worst) = self.heap.peek()
            && candidate < *worst
        {
            self.heap.pop();
            self.heap.push(candidate);
        }
    }

    /// The worst distance kept, once `k` are kept (a bound for pruning).
    pub fn threshold(&self) -> Option<f32> {
        (self.heap.len() == self.k)
            .then(|| self.heap.peek().map(|e| e.0.distance))
            .flatten()
    }

    /// The selection, nearest first.
    pub fn into_sorted(self) -> Vec<Neighbor> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|e| e.0)
            .collect()
    }
}

/// The `k` smallest of `distances` (index = position), nearest first, ties by index.
pub fn top_k(distances: &[f32], k: usize) -> Vec<Neighbor> {
    let mut top = TopK::new(k);
    for (i, &d) in distances.iter().enumerate() {
        top.push(i, d);
    }
    top.into_sorted()
}
