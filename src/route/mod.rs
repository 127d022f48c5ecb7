//! route layer (under construction).
