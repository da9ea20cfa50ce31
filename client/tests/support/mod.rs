//! Shared test fixtures.

pub mod mock_broker;
