//! What an action answers when its instance is missing or in the wrong state: shared by the
//! instance actions and the disk actions that name an instance (AttachDisk, ResizeDisk …).

use feitian_agent_api::InstanceStatus;
use feitian_api::ApiError;

pub fn not_found() -> ApiError {
    ApiError::new(404, "InvalidInstanceId.NotFound", "The specified InstanceId does not exist.")
}

pub fn incorrect_status(status: InstanceStatus, wanted: &str) -> ApiError {
    ApiError::new(403, "IncorrectInstanceStatus", "The current status of the resource does not support this operation.")
        .recommend(format!("the instance is {status}; this action needs it {wanted}"))
}
