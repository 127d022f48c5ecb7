//! dataplane layer (under construction).
