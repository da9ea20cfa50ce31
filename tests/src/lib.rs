//! Black-box, crash and fault tests for Sluice.
