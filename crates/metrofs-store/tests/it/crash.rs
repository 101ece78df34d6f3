//! Crash test placeholder (filled in below).
