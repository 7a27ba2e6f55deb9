//! Locking a standard mutex without caring about poisoning: every critical section in this crate
//! is a single assignment or collection operation, so the data stays consistent whatever panicked.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, recovering a poisoned one.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
