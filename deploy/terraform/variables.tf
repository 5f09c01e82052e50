# What the sketch needs from its user. Defaults follow examples/sensor.toml.
variable "region" {
  type    = string
  default = "us-east-1"
}

variable "name" {
  description = "Prefix of every resource's name."
  type        = string
  default     = "sluice"
}

variable "subnet_ids" {
  description = "Private subnets for the MSK brokers (one per availability zone, three)."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the brokers: allow 9098 (IAM over TLS) from the pods."
  type        = list(string)
}

variable "eks_oidc_provider_arn" {
  description = "The EKS cluster's OIDC provider, for IAM Roles for Service Accounts."
  type        = string
}

variable "eks_oidc_provider" {
  description = "The same provider's host and path, such as oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE."
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace of deploy/kubernetes."
  type        = string
  default     = "sluice"
}

variable "lake_prefix" {
  description = "Where the pipeline's tables live in the bucket (SLUICE_LAKE=s3://<bucket>/<prefix>)."
  type        = string
  default     = "sensor"
}

variable "tables" {
  description = "The pipeline's tables and window tables (`sluice check` lists them)."
  type        = list(string)
  default     = ["sensor_events", "device_1m"]
}

variable "topics" {
  description = "Every topic the stream reads or writes (`sluice check`, [iam] stream.kafka_topics)."
  type        = list(string)
  default     = ["sensor_alerts", "sensor_events", "sensor_events_dlq", "sensor_events_late"]
}

variable "gateway_topics" {
  description = "The topics of the streams the gateway takes (`sluice check`, [iam] gateway.kafka_topics)."
  type        = list(string)
  default     = ["sensor_events"]
}

variable "group" {
  description = "The pipeline's consumer group ([kafka] group)."
  type        = string
  default     = "sluice-sensors"
}
