output "host" {
  value = "${var.project}-${var.env}-db.internal"
}

output "version" {
  value = local.module_version
}

output "password" {
  value     = sha256("${var.project}/${var.env}/${null_resource.status.id}")
  sensitive = true
}
