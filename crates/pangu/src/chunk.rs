//! One chunk replica on a chunkserver disk (being written).
