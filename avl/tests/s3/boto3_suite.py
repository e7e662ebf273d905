"""boto3 against `avl serve`'s S3 front, as an application uses it.

Run by avl/tests/s3_clients.rs with S3_ENDPOINT (https://127.0.0.1:PORT), S3_CA (the
server's self-signed certificate), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set. Over
TLS the SDK sends its default upload form: aws-chunked with a CRC32 trailer.
Exits non-zero on the first failed check, saying which.
"""

import base64
import hashlib
import http.client
import os
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["S3_ENDPOINT"]
CA = os.environ["S3_CA"]
KEY = os.environ["AWS_ACCESS_KEY_ID"]
SECRET = os.environ["AWS_SECRET_ACCESS_KEY"]
MIB = 1 << 20
PASSED = []


def client(key=KEY, secret=SECRET, style="path", endpoint=ENDPOINT, signature=None):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        verify=CA,
        config=Config(s3={"addressing_style": style}, retries={"max_attempts": 1}, signature_version=signature),
    )


s3 = client()


def check(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - any failure fails the suite
        print(f"FAILED {fn.__name__}: {type(e).__name__}: {e}", flush=True)
        raise
    PASSED.append(fn.__name__)
    print(f"ok {fn.__name__}", flush=True)
    return fn


def error_code(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError(f"{call.__name__} succeeded; an error was expected")


def expect(code, status, call, *args, **kwargs):
    got = error_code(call, *args, **kwargs)
    assert got == (code, status), f"expected {(code, status)}, got {got}"


def md5(data):
    return hashlib.md5(data).hexdigest()


def tls_context():
    return ssl.create_default_context(cafile=CA)


def body(bucket, key, **kwargs):
    return s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read()


def http_error(url, method="GET"):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), context=tls_context()):
            pass
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        code = text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in text else ""
        return e.code, code
    raise AssertionError(f"{url} was answered")


@check
def buckets():
    s3.create_bucket(Bucket="assets")
    s3.create_bucket(Bucket="logs.2026")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert {"assets", "logs.2026"} <= set(names), names
    s3.head_bucket(Bucket="assets")
    expect("BucketAlreadyOwnedByYou", 409, s3.create_bucket, Bucket="assets")
    expect("404", 404, s3.head_bucket, Bucket="missing-bucket")
    for bad in ["ab", "Bad_Name", "-leading", "a" * 64, "192.168.1.1", "double..dot"]:
        expect("InvalidBucketName", 400, s3.create_bucket, Bucket=bad)


@check
def put_get_head_delete():
    data = b"hello, storage\n" * 100
    put = s3.put_object(
        Bucket="assets",
        Key="maps/level-1.json",
        Body=data,
        ContentType="application/json",
        CacheControl="max-age=60",
        Metadata={"author": "ana", "Level": "1"},
    )
    assert put["ETag"] == f'"{md5(data)}"', put["ETag"]
    got = s3.get_object(Bucket="assets", Key="maps/level-1.json")
    assert got["Body"].read() == data
    assert got["ContentType"] == "application/json"
    assert got["CacheControl"] == "max-age=60"
    assert got["Metadata"] == {"author": "ana", "level": "1"}, got["Metadata"]
    assert got["ETag"] == put["ETag"]
    head = s3.head_object(Bucket="assets", Key="maps/level-1.json")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == put["ETag"]
    # Keys S3 allows, "../" and spaces included, are only keys.
    for key in ["../../etc/passwd", "a b/c+d?e#f", "ação/日本.txt", "x" * 1024]:
        s3.put_object(Bucket="assets", Key=key, Body=key.encode())
        assert body("assets", key) == key.encode()
        s3.delete_object(Bucket="assets", Key=key)
    expect("KeyTooLongError", 400, s3.put_object, Bucket="assets", Key="x" * 1025, Body=b"")
    s3.put_object(Bucket="assets", Key="empty", Body=b"")
    assert body("assets", "empty") == b""
    expect("NoSuchKey", 404, s3.get_object, Bucket="assets", Key="nope")
    expect("404", 404, s3.head_object, Bucket="assets", Key="nope")
    expect("NoSuchBucket", 404, s3.get_object, Bucket="missing-bucket", Key="k")
    expect("NoSuchBucket", 404, s3.put_object, Bucket="missing-bucket", Key="k", Body=b"x")
    s3.delete_object(Bucket="assets", Key="empty")
    expect("NoSuchKey", 404, s3.get_object, Bucket="assets", Key="empty")
    # Deleting what is not there succeeds, as in S3.
    s3.delete_object(Bucket="assets", Key="empty")


@check
def ranges():
    data = bytes(range(256)) * 40
    s3.put_object(Bucket="assets", Key="bytes", Body=data)
    r = s3.get_object(Bucket="assets", Key="bytes", Range="bytes=2-5")
    assert r["Body"].read() == data[2:6]
    assert r["ContentRange"] == f"bytes 2-5/{len(data)}", r["ContentRange"]
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert body("assets", "bytes", Range="bytes=-3") == data[-3:]
    assert body("assets", "bytes", Range="bytes=10000-") == data[10000:]
    assert body("assets", "bytes", Range="bytes=10230-99999") == data[10230:]
    head = s3.head_object(Bucket="assets", Key="bytes", Range="bytes=0-9")
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 206 and head["ContentLength"] == 10, head
    # The SDK's aws-chunked framing is not the object's encoding.
    assert "ContentEncoding" not in head, head
    s3.put_object(Bucket="assets", Key="gz", Body=b"x", ContentEncoding="gzip")
    assert s3.head_object(Bucket="assets", Key="gz")["ContentEncoding"] == "gzip"
    expect("InvalidRange", 416, s3.get_object, Bucket="assets", Key="bytes", Range="bytes=20000-20010")


@check
def conditional_requests():
    first = s3.put_object(Bucket="assets", Key="cond", Body=b"v1")["ETag"]
    expect("PreconditionFailed", 412, s3.put_object, Bucket="assets", Key="cond", Body=b"v2", IfNoneMatch="*")
    expect("PreconditionFailed", 412, s3.put_object, Bucket="assets", Key="cond", Body=b"v2", IfMatch='"0123"')
    assert body("assets", "cond") == b"v1"
    second = s3.put_object(Bucket="assets", Key="cond", Body=b"v2", IfMatch=first)["ETag"]
    s3.put_object(Bucket="assets", Key="cond-new", Body=b"x", IfNoneMatch="*")
    expect("304", 304, s3.get_object, Bucket="assets", Key="cond", IfNoneMatch=second)
    expect("PreconditionFailed", 412, s3.get_object, Bucket="assets", Key="cond", IfMatch=first)
    assert body("assets", "cond", IfMatch=second) == b"v2"
    future = time.time() + 3600
    past = time.time() - 3600
    expect("304", 304, s3.get_object, Bucket="assets", Key="cond", IfModifiedSince=future)
    assert body("assets", "cond", IfModifiedSince=past) == b"v2"
    # A HEAD answer has no body: boto3 reports its status as the code.
    expect("412", 412, s3.head_object, Bucket="assets", Key="cond", IfUnmodifiedSince=past)


@check
def copies():
    s3.put_object(Bucket="assets", Key="src", Body=b"copied bytes", ContentType="text/plain", Metadata={"a": "1"})
    r = s3.copy_object(Bucket="logs.2026", Key="dst", CopySource={"Bucket": "assets", "Key": "src"})
    assert r["CopyObjectResult"]["ETag"] == f'"{md5(b"copied bytes")}"'
    got = s3.get_object(Bucket="logs.2026", Key="dst")
    assert got["Body"].read() == b"copied bytes"
    assert got["Metadata"] == {"a": "1"} and got["ContentType"] == "text/plain"
    s3.copy_object(
        Bucket="assets",
        Key="src",
        CopySource={"Bucket": "assets", "Key": "src"},
        MetadataDirective="REPLACE",
        Metadata={"b": "2"},
        ContentType="application/octet-stream",
    )
    head = s3.head_object(Bucket="assets", Key="src")
    assert head["Metadata"] == {"b": "2"} and head["ContentType"] == "application/octet-stream"
    expect("NoSuchKey", 404, s3.copy_object, Bucket="assets", Key="x", CopySource={"Bucket": "assets", "Key": "nope"})
    expect("PreconditionFailed", 412, s3.copy_object, Bucket="assets", Key="x",
           CopySource={"Bucket": "assets", "Key": "src"}, CopySourceIfMatch='"0000"')

    # The destination's own conditions, as for a PUT (sent as headers).
    def with_header(name, value):
        c = client()
        c.meta.events.register("before-sign.s3.CopyObject",
                               lambda request, **kwargs: request.headers.__setitem__(name, value))
        return c
    expect("PreconditionFailed", 412, with_header("If-None-Match", "*").copy_object, Bucket="logs.2026",
           Key="dst", CopySource={"Bucket": "assets", "Key": "src"})
    expect("PreconditionFailed", 412, with_header("If-Match", '"0000"').copy_object, Bucket="logs.2026",
           Key="dst", CopySource={"Bucket": "assets", "Key": "src"})
    assert body("logs.2026", "dst") == b"copied bytes"
    current = s3.head_object(Bucket="logs.2026", Key="dst")["ETag"]
    with_header("If-Match", current).copy_object(Bucket="logs.2026", Key="dst",
                                                 CopySource={"Bucket": "assets", "Key": "src"})
    with_header("If-None-Match", "*").copy_object(Bucket="logs.2026", Key="fresh",
                                                  CopySource={"Bucket": "assets", "Key": "src"})
    s3.delete_object(Bucket="logs.2026", Key="fresh")


@check
def listings():
    keys = ["photos/2025/a.jpg", "photos/2025/b.jpg", "photos/2026/c.jpg", "photos/d.jpg",
            "readme.txt", "videos/e.mp4", "a b+c.txt"]
    s3.create_bucket(Bucket="gallery")
    for k in keys:
        s3.put_object(Bucket="gallery", Key=k, Body=k.encode())
    everything = s3.list_objects_v2(Bucket="gallery")
    assert [o["Key"] for o in everything["Contents"]] == sorted(keys)
    top = s3.list_objects_v2(Bucket="gallery", Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["photos/", "videos/"]
    assert [o["Key"] for o in top["Contents"]] == ["a b+c.txt", "readme.txt"]
    inner = s3.list_objects_v2(Bucket="gallery", Prefix="photos/", Delimiter="/")
    assert [p["Prefix"] for p in inner["CommonPrefixes"]] == ["photos/2025/", "photos/2026/"]
    assert [o["Key"] for o in inner["Contents"]] == ["photos/d.jpg"]
    # Pages of two, by token (V2) and by marker (V1), through boto3's paginators.
    for op in ["list_objects_v2", "list_objects"]:
        for delimiter in [None, "/"]:
            args = {"Bucket": "gallery", "PaginationConfig": {"PageSize": 2}}
            if delimiter:
                args["Delimiter"] = delimiter
            seen = []
            pages = 0
            for page in s3.get_paginator(op).paginate(**args):
                pages += 1
                seen += [o["Key"] for o in page.get("Contents", [])]
                seen += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
            want = sorted(keys) if not delimiter else ["a b+c.txt", "photos/", "readme.txt", "videos/"]
            assert sorted(seen) == sorted(want), (op, delimiter, seen)
            assert pages == (len(want) + 1) // 2, (op, delimiter, pages)
    after = s3.list_objects_v2(Bucket="gallery", StartAfter="photos/2026/c.jpg")
    assert [o["Key"] for o in after["Contents"]] == ["photos/d.jpg", "readme.txt", "videos/e.mp4"]
    # encoding-type=url: asked for by the caller, botocore leaves the answer encoded.
    raw = s3.list_objects_v2(Bucket="gallery", Prefix="a ", EncodingType="url")
    assert [o["Key"] for o in raw["Contents"]] == ["a%20b%2Bc.txt"], raw["Contents"]
    assert raw["Prefix"] == "a%20", raw["Prefix"]
    raw = s3.list_objects(Bucket="gallery", Prefix="a ", EncodingType="url")
    assert [o["Key"] for o in raw["Contents"]] == ["a%20b%2Bc.txt"], raw["Contents"]
    expect("InvalidArgument", 400, s3.list_objects_v2, Bucket="gallery", ContinuationToken="zz")
    expect("NoSuchBucket", 404, s3.list_objects_v2, Bucket="missing-bucket")
    result = s3.delete_objects(Bucket="gallery", Delete={"Objects": [{"Key": k} for k in keys] + [{"Key": "never-there"}]})
    assert len(result["Deleted"]) == len(keys) + 1, result
    assert "Contents" not in s3.list_objects_v2(Bucket="gallery")
    s3.delete_bucket(Bucket="gallery")


@check
def multipart():
    part1 = os.urandom(5 * MIB)
    part2 = os.urandom(MIB + 7)
    up = s3.create_multipart_upload(Bucket="assets", Key="big.bin", ContentType="application/x-big")
    uid = up["UploadId"]
    e1 = s3.upload_part(Bucket="assets", Key="big.bin", UploadId=uid, PartNumber=1, Body=part1)["ETag"]
    e2 = s3.upload_part(Bucket="assets", Key="big.bin", UploadId=uid, PartNumber=2, Body=part2)["ETag"]
    parts = s3.list_parts(Bucket="assets", Key="big.bin", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, len(part1)), (2, len(part2))]
    uploads = s3.list_multipart_uploads(Bucket="assets")["Uploads"]
    assert any(u["UploadId"] == uid for u in uploads)
    expect("InvalidPartOrder", 400, s3.complete_multipart_upload, Bucket="assets", Key="big.bin", UploadId=uid,
           MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]})
    expect("InvalidPart", 400, s3.complete_multipart_upload, Bucket="assets", Key="big.bin", UploadId=uid,
           MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 3, "ETag": e2}]})
    done = s3.complete_multipart_upload(Bucket="assets", Key="big.bin", UploadId=uid,
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1},
                                                                   {"PartNumber": 2, "ETag": e2}]})
    digests = bytes.fromhex(e1.strip('"')) + bytes.fromhex(e2.strip('"'))
    assert done["ETag"] == f'"{md5(digests)}-2"', done["ETag"]
    got = s3.get_object(Bucket="assets", Key="big.bin")
    assert got["Body"].read() == part1 + part2
    assert got["ContentType"] == "application/x-big"
    assert body("assets", "big.bin", Range=f"bytes={5 * MIB - 2}-{5 * MIB + 1}") == (part1 + part2)[5 * MIB - 2:5 * MIB + 2]
    expect("NoSuchUpload", 404, s3.list_parts, Bucket="assets", Key="big.bin", UploadId=uid)
    # Create-only completion: the key exists now, so If-None-Match: * fails.
    up = s3.create_multipart_upload(Bucket="assets", Key="big.bin")["UploadId"]
    e = s3.upload_part(Bucket="assets", Key="big.bin", UploadId=up, PartNumber=1, Body=b"new")["ETag"]
    expect("PreconditionFailed", 412, s3.complete_multipart_upload, Bucket="assets", Key="big.bin", UploadId=up,
           MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]}, IfNoneMatch="*")
    s3.abort_multipart_upload(Bucket="assets", Key="big.bin", UploadId=up)
    # The completion sent again (a retry whose first answer was lost) answers the same.
    again = s3.complete_multipart_upload(Bucket="assets", Key="big.bin", UploadId=uid,
                                         MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1},
                                                                    {"PartNumber": 2, "ETag": e2}]})
    assert again["ETag"] == done["ETag"], again
    # A small part other than the last, and an aborted upload.
    up = s3.create_multipart_upload(Bucket="assets", Key="small.bin")["UploadId"]
    f1 = s3.upload_part(Bucket="assets", Key="small.bin", UploadId=up, PartNumber=1, Body=b"tiny")["ETag"]
    f2 = s3.upload_part(Bucket="assets", Key="small.bin", UploadId=up, PartNumber=2, Body=b"tiny")["ETag"]
    expect("EntityTooSmall", 400, s3.complete_multipart_upload, Bucket="assets", Key="small.bin", UploadId=up,
           MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": f1}, {"PartNumber": 2, "ETag": f2}]})
    s3.abort_multipart_upload(Bucket="assets", Key="small.bin", UploadId=up)
    expect("NoSuchUpload", 404, s3.upload_part, Bucket="assets", Key="small.bin", UploadId=up, PartNumber=1, Body=b"x")
    # UploadPartCopy with a range.
    up = s3.create_multipart_upload(Bucket="assets", Key="copied.bin")["UploadId"]
    c1 = s3.upload_part_copy(Bucket="assets", Key="copied.bin", UploadId=up, PartNumber=1,
                             CopySource={"Bucket": "assets", "Key": "big.bin"},
                             CopySourceRange=f"bytes=0-{5 * MIB - 1}")["CopyPartResult"]["ETag"]
    c2 = s3.upload_part(Bucket="assets", Key="copied.bin", UploadId=up, PartNumber=2, Body=b"tail")["ETag"]
    s3.complete_multipart_upload(Bucket="assets", Key="copied.bin", UploadId=up,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": c1},
                                                            {"PartNumber": 2, "ETag": c2}]})
    assert body("assets", "copied.bin") == part1 + b"tail"
    expect("InvalidArgument", 400, s3.upload_part, Bucket="assets", Key="x", UploadId=up, PartNumber=10001, Body=b"x")
    # A copy range must lie inside its source.
    up = s3.create_multipart_upload(Bucket="assets", Key="bad-copy")["UploadId"]
    expect("InvalidArgument", 400, s3.upload_part_copy, Bucket="assets", Key="bad-copy", UploadId=up, PartNumber=1,
           CopySource={"Bucket": "assets", "Key": "big.bin"}, CopySourceRange=f"bytes=0-{6 * MIB + 7}")
    s3.abort_multipart_upload(Bucket="assets", Key="bad-copy", UploadId=up)
    # Paging through uploads, three of one key and one of another, one per page.
    ids = [s3.create_multipart_upload(Bucket="assets", Key=k)["UploadId"] for k in ["same", "same", "same", "zz"]]
    listed = []
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket="assets", PaginationConfig={"PageSize": 1}):
        listed += [u["UploadId"] for u in page.get("Uploads", [])]
    assert sorted(listed) == sorted(ids), (listed, ids)
    for k, i in zip(["same", "same", "same", "zz"], ids):
        s3.abort_multipart_upload(Bucket="assets", Key=k, UploadId=i)


@check
def transfer_manager():
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"avl-s3-{os.getpid()}.bin")
    back = path + ".back"
    data = os.urandom(12 * MIB + 3)
    with open(path, "wb") as f:
        f.write(data)
    try:
        config = boto3.s3.transfer.TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=5 * MIB)
        s3.upload_file(path, "assets", "transfer.bin", Config=config)
        assert s3.head_object(Bucket="assets", Key="transfer.bin")["ETag"].endswith('-3"')
        s3.download_file("assets", "transfer.bin", back, Config=config)
        with open(back, "rb") as f:
            assert f.read() == data
    finally:
        for p in [path, back]:
            if os.path.exists(p):
                os.remove(p)


@check
def checksums():
    data = b"checksummed " * 1000
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    r = s3.put_object(Bucket="assets", Key="sum", Body=data, ChecksumAlgorithm="SHA256")
    assert r["ChecksumSHA256"] == sha, r
    head = s3.head_object(Bucket="assets", Key="sum", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == sha, head
    # boto3 checks a returned checksum against the bytes it reads.
    got = s3.get_object(Bucket="assets", Key="sum", ChecksumMode="ENABLED")
    assert got["ChecksumSHA256"] == sha and got["Body"].read() == data
    r = s3.put_object(Bucket="assets", Key="sum1", Body=data, ChecksumAlgorithm="SHA1")
    assert r["ChecksumSHA1"] == base64.b64encode(hashlib.sha1(data).digest()).decode(), r
    # The SDK's default over TLS: CRC32 in the trailer of an aws-chunked body.
    r = s3.put_object(Bucket="assets", Key="crc", Body=data)
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert r.get("ChecksumCRC32") == crc, r
    # A wrong checksum or Content-MD5 stores nothing and leaves the old object.
    wrong = base64.b64encode((zlib.crc32(data) ^ 1).to_bytes(4, "big")).decode()
    expect("BadDigest", 400, s3.put_object, Bucket="assets", Key="sum", Body=b"other", ChecksumCRC32=wrong)
    bad_md5 = base64.b64encode(hashlib.md5(b"x").digest()).decode()
    expect("BadDigest", 400, s3.put_object, Bucket="assets", Key="sum", Body=b"other", ContentMD5=bad_md5)
    expect("InvalidDigest", 400, s3.put_object, Bucket="assets", Key="sum", Body=b"other", ContentMD5="not-base64!")
    assert body("assets", "sum") == data
    # Parts are checked too.
    up = s3.create_multipart_upload(Bucket="assets", Key="parts-sum")["UploadId"]
    expect("BadDigest", 400, s3.upload_part, Bucket="assets", Key="parts-sum", UploadId=up, PartNumber=1,
           Body=b"part", ChecksumCRC32=wrong)
    ok = s3.upload_part(Bucket="assets", Key="parts-sum", UploadId=up, PartNumber=1, Body=b"part",
                        ChecksumAlgorithm="SHA256")
    assert ok["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(b"part").digest()).decode()
    s3.abort_multipart_upload(Bucket="assets", Key="parts-sum", UploadId=up)


@check
def multipart_checksums():
    a, b = os.urandom(5 * MIB), os.urandom(1000)
    raw = lambda d: zlib.crc32(d).to_bytes(4, "big")
    b64 = lambda r: base64.b64encode(r).decode()
    # COMPOSITE, the default for CRC32: the CRC32 of the parts' CRC32s, then -N.
    up = s3.create_multipart_upload(Bucket="assets", Key="mp-composite", ChecksumAlgorithm="CRC32")
    assert up.get("ChecksumAlgorithm") == "CRC32" and up.get("ChecksumType") == "COMPOSITE", up
    uid = up["UploadId"]
    # A part must use the upload's algorithm.
    expect("InvalidRequest", 400, s3.upload_part, Bucket="assets", Key="mp-composite", UploadId=uid,
           PartNumber=1, Body=a, ChecksumAlgorithm="SHA256")
    parts = []
    for n, data in [(1, a), (2, b)]:
        r = s3.upload_part(Bucket="assets", Key="mp-composite", UploadId=uid, PartNumber=n, Body=data,
                           ChecksumAlgorithm="CRC32")
        assert r["ChecksumCRC32"] == b64(raw(data)), r
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    # A part's checksum in the request must be the part's.
    bad = [dict(parts[0]), parts[1]]
    bad[0]["ChecksumCRC32"] = b64(raw(b"other"))
    expect("InvalidPart", 400, s3.complete_multipart_upload, Bucket="assets", Key="mp-composite", UploadId=uid,
           MultipartUpload={"Parts": bad})
    # A second checksum that is not the part's is checked too, not only the first.
    two = [dict(parts[0], ChecksumSHA1=b64(b"x" * 20)), parts[1]]
    expect("InvalidPart", 400, s3.complete_multipart_upload, Bucket="assets", Key="mp-composite", UploadId=uid,
           MultipartUpload={"Parts": two})
    done = s3.complete_multipart_upload(Bucket="assets", Key="mp-composite", UploadId=uid,
                                        MultipartUpload={"Parts": parts})
    composite = b64(raw(raw(a) + raw(b))) + "-2"
    assert done.get("ChecksumCRC32") == composite and done.get("ChecksumType") == "COMPOSITE", done
    head = s3.head_object(Bucket="assets", Key="mp-composite", ChecksumMode="ENABLED")
    assert head.get("ChecksumCRC32") == composite and head.get("ChecksumType") == "COMPOSITE", head
    got = s3.get_object(Bucket="assets", Key="mp-composite", ChecksumMode="ENABLED")
    assert got["Body"].read() == a + b

    # FULL_OBJECT: the CRC32 of the whole object, combined from the parts' without
    # reading them; boto3 checks it against the bytes of the GET.
    up = s3.create_multipart_upload(Bucket="assets", Key="mp-full", ChecksumAlgorithm="CRC32",
                                    ChecksumType="FULL_OBJECT")
    assert up.get("ChecksumType") == "FULL_OBJECT", up
    uid = up["UploadId"]
    parts = []
    for n, data in [(1, a), (2, b)]:
        r = s3.upload_part(Bucket="assets", Key="mp-full", UploadId=uid, PartNumber=n, Body=data,
                           ChecksumAlgorithm="CRC32")
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    whole = b64(raw(a + b))
    # A whole-object checksum given at completion must match.
    expect("BadDigest", 400, s3.complete_multipart_upload, Bucket="assets", Key="mp-full", UploadId=uid,
           MultipartUpload={"Parts": parts}, ChecksumCRC32=b64(raw(b"other")), ChecksumType="FULL_OBJECT")
    done = s3.complete_multipart_upload(Bucket="assets", Key="mp-full", UploadId=uid,
                                        MultipartUpload={"Parts": parts}, ChecksumCRC32=whole,
                                        ChecksumType="FULL_OBJECT")
    assert done.get("ChecksumCRC32") == whole and done.get("ChecksumType") == "FULL_OBJECT", done
    got = s3.get_object(Bucket="assets", Key="mp-full", ChecksumMode="ENABLED")
    assert got.get("ChecksumCRC32") == whole and got["Body"].read() == a + b, got
    # What S3 refuses at creation.
    expect("InvalidRequest", 400, s3.create_multipart_upload, Bucket="assets", Key="x",
           ChecksumAlgorithm="SHA256", ChecksumType="FULL_OBJECT")

    # A part copied into an upload that asked for CRC32 gets one too.
    uid = s3.create_multipart_upload(Bucket="assets", Key="mp-copy", ChecksumAlgorithm="CRC32")["UploadId"]
    r1 = s3.upload_part(Bucket="assets", Key="mp-copy", UploadId=uid, PartNumber=1, Body=a,
                        ChecksumAlgorithm="CRC32")
    r2 = s3.upload_part_copy(Bucket="assets", Key="mp-copy", UploadId=uid, PartNumber=2,
                             CopySource={"Bucket": "assets", "Key": "mp-full"},
                             CopySourceRange=f"bytes=0-{len(b) - 1}")["CopyPartResult"]
    assert r2.get("ChecksumCRC32") == b64(raw(a[:len(b)])), r2
    done = s3.complete_multipart_upload(Bucket="assets", Key="mp-copy", UploadId=uid, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": r1["ETag"]}, {"PartNumber": 2, "ETag": r2["ETag"]}]})
    assert done.get("ChecksumCRC32") == b64(raw(raw(a) + raw(a[:len(b)]))) + "-2", done

    # One part at a time (partNumber), as SDK transfer managers download.
    first = s3.get_object(Bucket="assets", Key="mp-full", PartNumber=1)
    assert first["PartsCount"] == 2 and first["ContentLength"] == len(a), first
    assert first["ContentRange"] == f"bytes 0-{len(a) - 1}/{len(a) + len(b)}", first
    assert first["Body"].read() == a
    second = s3.head_object(Bucket="assets", Key="mp-full", PartNumber=2)
    assert second["PartsCount"] == 2 and second["ContentLength"] == len(b), second
    expect("InvalidPartNumber", 416, s3.get_object, Bucket="assets", Key="mp-full", PartNumber=3)
    expect("InvalidRequest", 400, s3.get_object, Bucket="assets", Key="mp-full", PartNumber=1, Range="bytes=0-1")


def signed_chunks_put(key, data, chunk_size, tamper=False):
    """PUT with STREAMING-AWS4-HMAC-SHA256-PAYLOAD: each chunk signed, chained from the
    seed signature (no SDK here sends this form; the AWS Java SDK v1 did)."""
    import hmac
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    # Encoded length: each chunk's header line, bytes and CRLF (signatures are 64 hex).
    length = sum(len(f"{len(c):x};chunk-signature=".encode()) + 64 + 2 + len(c) + 2 for c in chunks)
    url = f"{ENDPOINT}/assets/{key}"
    request = AWSRequest(method="PUT", url=url, headers={
        "Content-Encoding": "aws-chunked",
        "Content-Length": str(length),
        "X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "X-Amz-Decoded-Content-Length": str(len(data)),
    })
    SigV4Auth(Credentials(KEY, SECRET), "s3", "us-east-1").add_auth(request)
    stamp = request.headers["X-Amz-Date"]
    scope = f"{stamp[:8]}/us-east-1/s3/aws4_request"
    previous = request.headers["Authorization"].rsplit("Signature=", 1)[1]

    def mac(k, m):
        return hmac.new(k, m.encode(), hashlib.sha256).digest()
    signing_key = mac(mac(mac(mac(("AWS4" + SECRET).encode(), stamp[:8]), "us-east-1"), "s3"), "aws4_request")
    empty = hashlib.sha256(b"").hexdigest()
    body = b""
    for c in chunks:
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", stamp, scope, previous, empty,
                              hashlib.sha256(c).hexdigest()])
        previous = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        if tamper and c:
            c = bytes([c[0] ^ 1]) + c[1:]
        body += f"{len(c):x};chunk-signature={previous}\r\n".encode() + c + b"\r\n"
    assert len(body) == length
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPSConnection(parsed.hostname, parsed.port, context=tls_context(), timeout=30)
    conn.request("PUT", parsed.path, body=body, headers=dict(request.headers.items()))
    reply = conn.getresponse()
    text = reply.read().decode()
    conn.close()
    return reply.status, text


@check
def signed_chunked_uploads():
    data = os.urandom(200_000)
    status, text = signed_chunks_put("signed-chunks", data, 65536)
    assert status == 200, (status, text)
    assert body("assets", "signed-chunks") == data
    # A chunk changed in flight fails its signature, and nothing is stored.
    status, text = signed_chunks_put("tampered-chunks", data, 65536, tamper=True)
    assert status == 403 and "SignatureDoesNotMatch" in text, (status, text)
    expect("404", 404, s3.head_object, Bucket="assets", Key="tampered-chunks")


@check
def presigned_urls():
    s3.put_object(Bucket="assets", Key="shared.txt", Body=b"shared")
    # boto3 presigns with SigV2 by default here, and with SigV4 when asked.
    v4 = client(signature="s3v4")
    for signer in [s3, v4]:
        url = signer.generate_presigned_url("get_object", Params={"Bucket": "assets", "Key": "shared.txt"}, ExpiresIn=300)
        with urllib.request.urlopen(url, context=tls_context()) as r:
            assert r.read() == b"shared"
    put_url = v4.generate_presigned_url("put_object", Params={"Bucket": "assets", "Key": "via-url"}, ExpiresIn=300)
    req = urllib.request.Request(put_url, data=b"from a plain client", method="PUT")
    with urllib.request.urlopen(req, context=tls_context()) as r:
        assert r.status == 200
    assert body("assets", "via-url") == b"from a plain client"
    # Tampered: another key under the same signature.
    url = v4.generate_presigned_url("get_object", Params={"Bucket": "assets", "Key": "shared.txt"}, ExpiresIn=300)
    assert http_error(url.replace("shared.txt", "via-url")) == (403, "SignatureDoesNotMatch")
    # Expired, in both forms.
    for signer in [s3, v4]:
        short = signer.generate_presigned_url("get_object", Params={"Bucket": "assets", "Key": "shared.txt"}, ExpiresIn=1)
        time.sleep(2.1)
        status, code = http_error(short)
        assert status == 403 and code == "AccessDenied", (status, code)
    # Unsigned.
    status, code = http_error(f"{ENDPOINT}/assets/shared.txt")
    assert status == 403 and code == "AccessDenied", (status, code)


@check
def bad_credentials():
    expect("SignatureDoesNotMatch", 403, client(secret="wrong" + SECRET).list_buckets)
    expect("InvalidAccessKeyId", 403, client(key="AKIDNOSUCHKEY0000000").list_buckets)
    # A client whose clock is 20 minutes behind.
    import datetime
    from unittest import mock

    late = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)
    with mock.patch("botocore.auth.get_current_datetime", return_value=late.replace(tzinfo=None)):
        expect("RequestTimeTooSkewed", 403, client().list_buckets)


@check
def truncated_upload_stores_nothing():
    def raw_put(key, length, data):
        url = s3.generate_presigned_url("put_object", Params={"Bucket": "assets", "Key": key}, ExpiresIn=300)
        parsed = urllib.parse.urlsplit(url)
        raw = socket.create_connection((parsed.hostname, parsed.port))
        conn = tls_context().wrap_socket(raw, server_hostname=parsed.hostname)
        path = parsed.path + "?" + parsed.query
        head = f"PUT {path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
        conn.sendall(head.encode() + data)
        if length != len(data):
            conn.close()
            return None
        answer = conn.recv(4096)
        conn.close()
        return answer

    # The same request whole is stored; cut short, nothing is.
    assert raw_put("whole", 15, b"only part of it").startswith(b"HTTP/1.1 200"), "a whole raw PUT failed"
    assert body("assets", "whole") == b"only part of it"
    raw_put("truncated", 1000, b"only part of it")
    time.sleep(0.5)
    expect("404", 404, s3.head_object, Bucket="assets", Key="truncated")


@check
def virtual_host_addressing():
    # bucket.localhost may not resolve here: connect to the address, name the host.
    port = urllib.parse.urlsplit(ENDPOINT).port
    vclient = client(style="virtual", endpoint=f"https://localhost:{port}")
    url = vclient.generate_presigned_url("get_object", Params={"Bucket": "assets", "Key": "shared.txt"}, ExpiresIn=300)
    parsed = urllib.parse.urlsplit(url)
    assert parsed.hostname == "assets.localhost", url
    ctx = tls_context()
    ctx.check_hostname = False
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
    conn.request("GET", parsed.path + "?" + parsed.query, headers={"Host": parsed.netloc})
    r = conn.getresponse()
    assert (r.status, r.read()) == (200, b"shared"), r.status


@check
def bucket_not_empty():
    expect("BucketNotEmpty", 409, s3.delete_bucket, Bucket="logs.2026")
    s3.delete_object(Bucket="logs.2026", Key="dst")
    s3.delete_bucket(Bucket="logs.2026")
    expect("NoSuchBucket", 404, s3.delete_bucket, Bucket="logs.2026")


print(f"boto3 suite: all {len(PASSED)} checks ok (boto3 {boto3.__version__}, botocore {botocore.__version__})")
