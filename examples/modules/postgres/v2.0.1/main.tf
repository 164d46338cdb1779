# Example `postgres` module 2.0.1: a stand-in for a real database that records, per environment,
# which module version is deployed in a status file read by the demo metrics exporter.
terraform {
  required_version = ">= 1.0"
  required_providers {
    null = { source = "hashicorp/null", version = "2.1.2" }
  }
}

locals {
  module_version = "2.0.1"
  # Relative to $ESTATE_HOME, which the runner puts in Terraform's environment.
  status_file = "demo/status/${var.project}/${var.env}.json"
  status = jsonencode({
    module   = "postgres"
    version  = local.module_version
    project  = var.project
    env      = var.env
    env_type = var.env_type
  })
}

resource "null_resource" "status" {
  # Any change of version or inputs replaces the resource, so the status file is rewritten.
  triggers = {
    status     = local.status
    size       = var.size
    fail_apply = tostring(var.fail_apply)
  }

  provisioner "local-exec" {
    command = <<-EOT
      if [ "$DELAY" != 0 ]; then sleep "$DELAY"; fi
      if [ "$FAIL" = true ]; then echo "postgres: fail_apply is set, failing on purpose" >&2; exit 3; fi
      : "$${ESTATE_HOME:?ESTATE_HOME must be set in the runner environment}"
      mkdir -p "$(dirname "$ESTATE_HOME/$FILE")"
      printf '%s\n' "$STATUS" > "$ESTATE_HOME/$FILE.tmp" && mv "$ESTATE_HOME/$FILE.tmp" "$ESTATE_HOME/$FILE"
    EOT
    environment = {
      DELAY  = tostring(var.apply_delay_seconds)
      FAIL   = tostring(var.fail_apply)
      FILE   = local.status_file
      STATUS = local.status
    }
  }
}
