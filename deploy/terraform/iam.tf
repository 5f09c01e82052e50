# One role per Kubernetes service account (IRSA), each with exactly what sluice does: the
# actions are those `sluice check --pipeline FILE` prints under [iam] for the pipeline (the
# code keeps them: sluice_lake::location::S3_*_ACTIONS, sluice_kafka::msk_iam::*_ACTIONS), on
# the pipeline's table prefixes, topics and group only. scripts/check_deploy.py compares.
locals {
  # MSK's ARNs for topics and groups are the cluster's with another resource type.
  topic_arn_prefix = replace(aws_msk_cluster.kafka.arn, ":cluster/", ":topic/")
  group_arn_prefix = replace(aws_msk_cluster.kafka.arn, ":cluster/", ":group/")
  table_prefixes   = [for table in var.tables : "${var.lake_prefix}/${table}"]
}

data "aws_iam_policy_document" "assume" {
  for_each = toset(["stream", "gateway"])
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.eks_oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.eks_oidc_provider}:sub"
      values   = ["system:serviceaccount:${var.namespace}:sluice-${each.key}"]
    }
  }
}

resource "aws_iam_role" "sluice" {
  for_each           = toset(["stream", "gateway"])
  name               = "${var.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.assume[each.key].json
}

data "aws_iam_policy_document" "stream" {
  statement {
    sid       = "KafkaCluster"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:WriteDataIdempotently"]
    resources = [aws_msk_cluster.kafka.arn]
  }
  statement {
    sid       = "KafkaTopics"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData", "kafka-cluster:WriteData"]
    resources = [for topic in var.topics : "${local.topic_arn_prefix}/${topic}"]
  }
  statement {
    sid       = "KafkaGroup"
    actions   = ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"]
    resources = ["${local.group_arn_prefix}/${var.group}"]
  }
  statement {
    sid       = "LakeObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = [for prefix in local.table_prefixes : "${aws_s3_bucket.lake.arn}/${prefix}/*"]
  }
  statement {
    sid       = "LakeListing"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = flatten([for prefix in local.table_prefixes : [prefix, "${prefix}/*"]])
    }
  }
}

data "aws_iam_policy_document" "gateway" {
  statement {
    sid       = "KafkaCluster"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:WriteDataIdempotently"]
    resources = [aws_msk_cluster.kafka.arn]
  }
  statement {
    sid       = "KafkaTopics"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
    resources = [for topic in var.gateway_topics : "${local.topic_arn_prefix}/${topic}"]
  }
}

resource "aws_iam_role_policy" "stream" {
  name   = "${var.name}-stream"
  role   = aws_iam_role.sluice["stream"].id
  policy = data.aws_iam_policy_document.stream.json
}

resource "aws_iam_role_policy" "gateway" {
  name   = "${var.name}-gateway"
  role   = aws_iam_role.sluice["gateway"].id
  policy = data.aws_iam_policy_document.gateway.json
}

output "bootstrap_brokers_iam" {
  description = "SLUICE_BROKERS for deploy/kubernetes."
  value       = aws_msk_cluster.kafka.bootstrap_brokers_sasl_iam
}

output "lake" {
  description = "SLUICE_LAKE for deploy/kubernetes."
  value       = "s3://${aws_s3_bucket.lake.bucket}/${var.lake_prefix}"
}

output "role_arns" {
  description = "The eks.amazonaws.com/role-arn annotations of deploy/kubernetes's service accounts."
  value       = { for role, r in aws_iam_role.sluice : role => r.arn }
}
