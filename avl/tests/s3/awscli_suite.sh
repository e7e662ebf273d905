#!/usr/bin/env bash
# aws-cli against `avl serve`'s S3 front: the high-level `aws s3` commands and a few
# `aws s3api` calls. Run by avl/tests/s3_clients.rs with S3_ENDPOINT, AWS_CA_BUNDLE and
# the key pair set. Stops at the first failed check, saying which.
set -euo pipefail

aws_s3() { aws --endpoint-url "$S3_ENDPOINT" --no-paginate "$@"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
checks=0
ok() { checks=$((checks + 1)); echo "ok $1"; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

aws_s3 s3 mb s3://cli-bucket >/dev/null
aws_s3 s3 ls | grep -q " cli-bucket$" || fail "the new bucket is not listed"
ok "mb and ls"

printf 'small file\n' >"$work/small.txt"
head -c $((9 * 1024 * 1024 + 5)) /dev/urandom >"$work/big.bin"
aws_s3 s3 cp --no-progress "$work/small.txt" s3://cli-bucket/docs/small.txt >/dev/null
aws_s3 s3 cp --no-progress "$work/big.bin" s3://cli-bucket/data/big.bin >/dev/null
etag="$(aws_s3 s3api head-object --bucket cli-bucket --key data/big.bin --query ETag --output text)"
[[ "$etag" == *-2\" ]] || fail "a 9 MiB upload is not two parts: $etag"
ok "cp up (single and multipart)"

aws_s3 s3 cp --no-progress s3://cli-bucket/data/big.bin "$work/big.back" >/dev/null
cmp -s "$work/big.bin" "$work/big.back" || fail "the download differs"
[[ "$(aws_s3 s3 cp s3://cli-bucket/docs/small.txt -)" == "small file" ]] || fail "cp to stdout"
ok "cp down"

listing="$(aws_s3 s3 ls s3://cli-bucket/)"
grep -q "PRE docs/" <<<"$listing" || fail "no docs/ prefix in: $listing"
grep -q "PRE data/" <<<"$listing" || fail "no data/ prefix in: $listing"
[[ "$(aws_s3 s3 ls --recursive s3://cli-bucket | wc -l)" == 2 ]] || fail "recursive ls"
ok "ls with prefixes"

mkdir -p "$work/tree/a/b"
for i in 1 2 3; do echo "file $i" >"$work/tree/a/b/f$i.txt"; done
echo "top" >"$work/tree/top with space.txt"
aws_s3 s3 sync --no-progress "$work/tree" s3://cli-bucket/tree >/dev/null
[[ "$(aws_s3 s3 ls --recursive s3://cli-bucket/tree/ | wc -l)" == 4 ]] || fail "sync up"
mkdir "$work/tree2"
aws_s3 s3 sync --no-progress s3://cli-bucket/tree "$work/tree2" >/dev/null
diff -r "$work/tree" "$work/tree2" >/dev/null || fail "sync down differs"
ok "sync both ways"

aws_s3 s3api put-object --bucket cli-bucket --key docs/small.txt --body "$work/small.txt" \
    --if-none-match '*' >/dev/null 2>"$work/err" && fail "create-only put replaced an object"
grep -q PreconditionFailed "$work/err" || fail "no PreconditionFailed: $(cat "$work/err")"
ok "conditional put"

url="$(aws_s3 s3 presign s3://cli-bucket/docs/small.txt --expires-in 120)"
[[ "$(python3 -c 'import os,ssl,sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], context=ssl.create_default_context(cafile=os.environ["AWS_CA_BUNDLE"])).read().decode(), end="")' "$url")" == "small file" ]] \
    || fail "presigned GET"
ok "presign"

aws_s3 s3 cp --no-progress s3://cli-bucket/docs/small.txt s3://cli-bucket/copy.txt >/dev/null
[[ "$(aws_s3 s3 cp s3://cli-bucket/copy.txt -)" == "small file" ]] || fail "server-side copy"
ok "copy"

aws_s3 s3 rb s3://cli-bucket >/dev/null 2>"$work/err" && fail "removed a bucket that is not empty"
grep -q BucketNotEmpty "$work/err" || fail "no BucketNotEmpty: $(cat "$work/err")"
aws_s3 s3 rm --recursive s3://cli-bucket >/dev/null
aws_s3 s3 rb s3://cli-bucket >/dev/null
aws_s3 s3 ls | grep -q " cli-bucket$" && fail "the bucket is still listed"
ok "rm and rb"

echo "aws-cli suite: all $checks checks ok ($(aws --version 2>&1))"
