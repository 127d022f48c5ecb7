//! fib layer (under construction).
