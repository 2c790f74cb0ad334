// Reads without a copy, for downloads: librbd's C API copies what it read into the caller's
// buffer, its C++ API hands over the bufferlist the messenger received into. This shim gives
// Rust that bufferlist's segments, to send as they are, and releases it when they are sent.
// Every function returns a negative errno on error, like librbd's C API.

#include <cerrno>
#include <new>
#include <sys/uio.h>

#include <rbd/librbd.hpp>

namespace {

struct Image {
  librbd::RBD rbd;
  librbd::Image image;
};

struct Read {
  ceph::bufferlist bl;
  librbd::RBD::AioCompletion *completion = nullptr;
};

}  // namespace

extern "C" {

// Opens `name` at `snap` (null: the head) read-only, through the C API's I/O context.
int grs_rbd_open_read(rados_ioctx_t io, const char *name, const char *snap, void **out,
                      uint64_t *size) {
  librados::IoCtx ioctx;
  librados::IoCtx::from_rados_ioctx_t(io, ioctx);
  auto *img = new (std::nothrow) Image;
  if (img == nullptr) return -ENOMEM;
  int r = img->rbd.open_read_only(ioctx, img->image, name, snap);
  if (r == 0) r = img->image.size(size);
  if (r < 0) {
    delete img;
    return r;
  }
  *out = img;
  return 0;
}

void grs_rbd_close(void *img) {
  auto *i = static_cast<Image *>(img);
  i->image.close();
  delete i;
}

// Starts reading `len` bytes at `off`.
int grs_rbd_aio_read(void *img, uint64_t off, size_t len, void **out) {
  auto *rd = new (std::nothrow) Read;
  if (rd == nullptr) return -ENOMEM;
  rd->completion = new (std::nothrow) librbd::RBD::AioCompletion(nullptr, nullptr);
  if (rd->completion == nullptr) {
    delete rd;
    return -ENOMEM;
  }
  int r = static_cast<Image *>(img)->image.aio_read2(off, len, rd->bl, rd->completion, 0);
  if (r < 0) {
    rd->completion->release();
    delete rd;
    return r;
  }
  *out = rd;
  return 0;
}

// Waits for the read; the bytes read, or a negative errno. The completion goes at once, so
// that what outlives the image (the buffers a response still sends) is only the bufferlist.
ssize_t grs_rbd_read_wait(void *read) {
  auto *rd = static_cast<Read *>(read);
  rd->completion->wait_for_complete();
  ssize_t r = rd->completion->get_return_value();
  rd->completion->release();
  rd->completion = nullptr;
  return r;
}

// The completed read's segments, up to `max` of them into `iov`; how many there are.
size_t grs_rbd_read_segments(void *read, struct iovec *iov, size_t max) {
  size_t n = 0;
  for (const auto &p : static_cast<Read *>(read)->bl.buffers()) {
    if (n < max) {
      iov[n].iov_base = const_cast<char *>(p.c_str());
      iov[n].iov_len = p.length();
    }
    n++;
  }
  return n;
}

// Waits for the read if it still runs, then frees it and its bytes.
void grs_rbd_read_release(void *read) {
  auto *rd = static_cast<Read *>(read);
  if (rd->completion != nullptr) {
    rd->completion->wait_for_complete();
    rd->completion->release();
  }
  delete rd;
}

}  // extern "C"
