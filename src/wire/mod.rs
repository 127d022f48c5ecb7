//! wire layer (under construction).
