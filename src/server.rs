//! The poll loop.
