//! Wire formats: checked views over byte buffers and plain `Repr`s.
#![forbid(unsafe_code)]
