# An AWS sketch for sluice: MSK with IAM authentication, the lake's S3 bucket, a Glue database
# for the tables, and one IAM role per Kubernetes service account (deploy/kubernetes) with
# exactly the actions sluice uses (iam.tf). A starting point to adapt, not a module: it is
# parsed and its IAM actions compared with what `sluice check` prints (scripts/check_deploy.py);
# `terraform plan` has not been run here (no AWS account).
terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}

provider "aws" {
  region = var.region
}

resource "aws_msk_cluster" "kafka" {
  cluster_name           = var.name
  kafka_version          = "3.6.0"
  number_of_broker_nodes = 3

  broker_node_group_info {
    instance_type   = "kafka.m7g.large"
    client_subnets  = var.subnet_ids
    security_groups = var.security_group_ids
    storage_info {
      ebs_storage_info {
        volume_size = 500
      }
    }
  }

  # IAM only (port 9098), TLS only: sluice's `sasl_mechanism = "AWS_MSK_IAM"`.
  client_authentication {
    unauthenticated = false
    sasl {
      iam   = true
      scram = false
    }
  }
  encryption_info {
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }
}

resource "aws_s3_bucket" "lake" {
  bucket_prefix = "${var.name}-lake-"
}

# Delta keeps its own history: S3 versioning would only keep deleted Parquet files around.
resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id
  versioning_configuration {
    status = "Disabled"
  }
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket                  = aws_s3_bucket.lake.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# A large Parquet file is a multipart upload; one cut short by a crash would cost storage forever.
resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

# TLS only.
resource "aws_s3_bucket_policy" "lake" {
  bucket = aws_s3_bucket.lake.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [aws_s3_bucket.lake.arn, "${aws_s3_bucket.lake.arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })
}

# For Athena, Trino or Spark to find the tables by name (register them as Delta tables there).
resource "aws_glue_catalog_database" "lake" {
  name = replace("${var.name}_lake", "-", "_")
}
