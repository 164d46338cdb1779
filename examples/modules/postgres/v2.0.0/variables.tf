variable "env" {
  type        = string
  description = "Environment id (the env part of project/env)."
}

variable "project" {
  type        = string
  description = "Project id."
}

variable "env_type" {
  type        = string
  description = "Env type id (ephemeral, development, staging, production)."
}

variable "size" {
  type        = string
  default     = "small"
  description = "Instance size, from the project's manifest params."
}

variable "fail_apply" {
  type        = bool
  default     = false
  description = "Make the apply fail on purpose (for tests and demos)."
}

variable "apply_delay_seconds" {
  type        = number
  default     = 0
  description = "Sleep this long during apply (for timeout tests and demos)."
}
