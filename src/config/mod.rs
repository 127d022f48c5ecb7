//! config layer (under construction).
