//! Mutexes whose poisoning is ignored.

use std::sync::Mutex;

/// A poisoned lock only means another thread panicked while holding it; the maps it guards stay consistent
/// (every update is a single insert or remove), so the data is used as it is.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
