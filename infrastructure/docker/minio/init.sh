#!/bin/sh
# compose `minio-init` (minio/mc image): creates the bucket and a user that may use only that
# bucket, whose keys the daemons get as MINILAMBDA_S3_ACCESS_KEY / _SECRET_KEY. Idempotent.
set -eu
mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "local/$S3_BUCKET"
cat >/tmp/policy.json <<POLICY
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
     "Resource": ["arn:aws:s3:::$S3_BUCKET"]},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                                   "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::$S3_BUCKET/*"]}
  ]
}
POLICY
mc admin policy create local minilambda-rw /tmp/policy.json
mc admin user add local "$S3_ACCESS_KEY" "$S3_SECRET_KEY"
# attach fails when the policy is already attached (a re-run): that is fine
mc admin policy attach local minilambda-rw --user "$S3_ACCESS_KEY" 2>/dev/null || true
echo "minio-init: bucket $S3_BUCKET ready for $S3_ACCESS_KEY"
