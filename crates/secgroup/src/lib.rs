//! Security groups as pure logic: rule validation and the packet evaluator (being written).
