"""`avl serve --no-auth`: unsigned requests are let in, and signed ones (aws-chunked
bodies included) still work with the root key pair. An unsigned aws-chunked body (what
the SDK sends over TLS by default) is refused with a clear error rather than stored with
its framing. Run by avl/tests/s3_clients.rs."""

import base64
import os

import boto3
from botocore import UNSIGNED
from botocore.config import Config

ENDPOINT = os.environ["S3_ENDPOINT"]
CA = os.environ["S3_CA"]


def client(config):
    return boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1", verify=CA, config=config)


unsigned = client(Config(signature_version=UNSIGNED, request_checksum_calculation="when_required"))
streaming = client(Config(signature_version=UNSIGNED))
signed = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1", verify=CA)
unsigned.create_bucket(Bucket="open")
unsigned.put_object(Bucket="open", Key="a", Body=b"unsigned")
assert signed.get_object(Bucket="open", Key="a")["Body"].read() == b"unsigned"
signed.put_object(Bucket="open", Key="b", Body=b"signed, streamed")
assert unsigned.get_object(Bucket="open", Key="b")["Body"].read() == b"signed, streamed"
try:
    streaming.put_object(Bucket="open", Key="c", Body=b"framed")
    raise AssertionError("an unsigned aws-chunked body was taken")
except streaming.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidRequest", e.response
    assert "when_required" in e.response["Error"]["Message"], e.response

# A body over S3's 5 GiB limit is refused from its Content-Length, before any of it is
# read: EntityTooLarge, as S3's XML.
import http.client
import ssl
from urllib.parse import urlparse

url = urlparse(ENDPOINT)
conn = http.client.HTTPSConnection(url.hostname, url.port, context=ssl.create_default_context(cafile=CA),
                                   timeout=30)
conn.putrequest("PUT", "/open/huge")
conn.putheader("Content-Length", str(6 << 30))
conn.putheader("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
conn.endheaders()
reply = conn.getresponse()
text = reply.read().decode()
assert reply.status == 400 and "<Code>EntityTooLarge</Code>" in text, (reply.status, text)
conn.close()
try:
    signed.head_object(Bucket="open", Key="huge")
    raise AssertionError("a refused body was stored")
except signed.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "404", e.response

# Sub-resources this store does not implement change nothing (s3s alone would route
# DELETE ?acl to DeleteBucket and PUT ?torrent to PutObject).
def raw(method, path, body=b"", headers=None):
    c = http.client.HTTPSConnection(url.hostname, url.port, context=ssl.create_default_context(cafile=CA),
                                    timeout=30)
    c.request(method, path, body=body, headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD", **(headers or {})})
    r = c.getresponse()
    out = (r.status, r.read().decode())
    c.close()
    return out


for method, path in [("DELETE", "/open?acl"), ("DELETE", "/open?versioning"), ("DELETE", "/open/a?tagging"),
                     ("PUT", "/open/a?torrent"), ("PUT", "/open/a?restore"), ("GET", "/open/a?attributes")]:
    status, text = raw(method, path, b"OVERWRITTEN" if method == "PUT" else b"")
    assert status == 501 and "<Code>NotImplemented</Code>" in text, (method, path, status, text)
assert signed.get_object(Bucket="open", Key="a")["Body"].read() == b"unsigned"
signed.head_bucket(Bucket="open")

# Headers HTTP says to ignore when invalid are ignored; dates in the older HTTP forms
# are read.
whole = b"signed, streamed"
assert raw("GET", "/open/b", headers={"Range": "bytes=5-3"}) == (200, whole.decode())
assert raw("GET", "/open/b", headers={"If-Modified-Since": "yesterday"}) == (200, whole.decode())
assert raw("GET", "/open/b", headers={"If-Modified-Since": "Sun Nov  6 08:49:37 2044"})[0] == 304
assert raw("GET", "/open/b", headers={"If-Unmodified-Since": "Sunday, 06-Nov-94 08:49:37 GMT"})[0] == 412
assert raw("GET", "/open/b", headers={"Range": "bytes=1-3"}) == (206, whole[1:4].decode())

# DeleteObjects needs an integrity header, and it must match (else nothing is deleted).
import hashlib

doc = b'<Delete><Object><Key>a</Key></Object></Delete>'
status, text = raw("POST", "/open?delete", doc)
assert status == 400 and "<Code>InvalidRequest</Code>" in text, (status, text)
wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
status, text = raw("POST", "/open?delete", doc, {"Content-MD5": wrong})
assert status == 400 and "<Code>BadDigest</Code>" in text, (status, text)
status, text = raw("POST", "/open?delete", doc, {"x-amz-checksum-crc32": "AAAAAA=="})
assert status == 400 and "<Code>BadDigest</Code>" in text, (status, text)
status, text = raw("POST", "/open?delete", doc, {"Content-MD5": "!!!"})
assert status == 400 and "<Code>InvalidDigest</Code>" in text, (status, text)
assert signed.get_object(Bucket="open", Key="a")["Body"].read() == b"unsigned"
right = base64.b64encode(hashlib.md5(doc).digest()).decode()
status, text = raw("POST", "/open?delete", doc, {"Content-MD5": right})
assert status == 200 and "<Deleted>" in text, (status, text)

# The server runs with --abandoned-uploads-after 2: an upload left unfinished is
# aborted and its part reclaimed a few seconds later.
import time

upload = signed.create_multipart_upload(Bucket="open", Key="abandoned")["UploadId"]
signed.upload_part(Bucket="open", Key="abandoned", UploadId=upload, PartNumber=1, Body=b"part")
assert [u["UploadId"] for u in signed.list_multipart_uploads(Bucket="open").get("Uploads", [])] == [upload]
deadline = time.time() + 20
while signed.list_multipart_uploads(Bucket="open").get("Uploads"):
    assert time.time() < deadline, "the abandoned upload was not reclaimed"
    time.sleep(0.5)
try:
    signed.list_parts(Bucket="open", Key="abandoned", UploadId=upload)
    raise AssertionError("the reclaimed upload still lists parts")
except signed.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "NoSuchUpload", e.response
print("no-auth: ok")
