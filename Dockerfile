# syntax=docker/dockerfile:1.4
# Restyle's images (docs/deploy.md#images). `make image` builds the CPU ones
# with podman (tools/image.sh); docker buildx builds them the same way.
#
#   --target front        restyled and the restyle CLI: no LibTorch, no GPU
#   --target worker       restyle-worker on Debian's LibTorch (CPU)
#   --target worker-cuda  restyle-worker on a CUDA LibTorch you provide:
#       --build-context libtorch=DIR  (an unpacked libtorch-cxx11-abi-*-cu*.zip
#                                      or <site-packages>/torch)
#       --build-arg CUDA_KERNELS=ON   (the engine's own kernels; needs nvcc)
#
# The build stage installs exactly what `make deps` installs and builds
# with `make build`: the image is built by the project's own steps. The
# runtime stages hold no compiler: only the Debian packages whose shared
# libraries the binaries load (tools/runtime_packages.sh lists them), and the
# worker's optimised BLAS (without it LibTorch falls back to the reference
# BLAS, 7-20x slower) and the front's sqlite3 shell (online backups,
# docs/deploy.md).
ARG DEBIAN=docker.io/library/debian:bookworm-slim

# --- build -------------------------------------------------------------------
FROM ${DEBIAN} AS build
ENV DEBIAN_FRONTEND=noninteractive RESTYLE_DEPS=build CCACHE_DIR=/ccache
WORKDIR /src
COPY tools/install_deps.sh tools/
RUN --mount=type=cache,target=/var/cache/apt --mount=type=cache,target=/var/lib/apt/lists \
    rm -f /etc/apt/apt.conf.d/docker-clean && tools/install_deps.sh
COPY . .
RUN --mount=type=cache,target=/ccache \
    make build BUILD_DIR=/build CMAKE_FLAGS="-DRESTYLE_BUILD_TESTS=OFF" \
      BUILD_TARGETS="restyled restyle-worker restyle"
RUN mkdir -p /out/bin /out/share \
 && cp /build/server/restyled /build/worker/restyle-worker /build/client/restyle /out/bin/ \
 && strip /out/bin/* \
 && cp worker/engine/clip/data/* /out/share/ \
 && tools/runtime_packages.sh /out/bin/restyled /out/bin/restyle > /out/front-packages \
 && echo sqlite3 >> /out/front-packages \
 && tools/runtime_packages.sh /out/bin/restyle-worker > /out/worker-packages \
 && echo libopenblas0-pthread >> /out/worker-packages

# --- runtime base ------------------------------------------------------------
FROM ${DEBIAN} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="Restyle" \
      org.opencontainers.image.description="Text-driven domain adaptation of image generators, as a service" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENV RESTYLE_DATA_DIR=/usr/share/restyle
RUN groupadd --system --gid 10001 restyle \
 && useradd --system --uid 10001 --gid restyle --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin restyle
COPY --from=build /out/share/ /usr/share/restyle/

# --- front: restyled and the CLI ----------------------------------------------
FROM runtime AS front
COPY --from=build /out/front-packages /tmp/packages
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends $(cat /tmp/packages) \
 && rm -rf /tmp/packages /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY --from=build /out/bin/restyled /out/bin/restyle /usr/local/bin/
RUN mkdir -p /data && chown restyle:restyle /data
USER 10001:10001
VOLUME /data
# api, worker, health (plaintext gRPC health), metrics
EXPOSE 8700 8701 8702 8703
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["restyle", "--server", "127.0.0.1:8702", "--timeout", "2s", "health", "--service", "restyle.worker.v1.WorkerService"]
ENTRYPOINT ["restyled"]
CMD ["--data-dir", "/data"]

# --- worker: restyle-worker on the CPU ----------------------------------------
FROM runtime AS worker
COPY --from=build /out/worker-packages /tmp/packages
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends $(cat /tmp/packages) \
 && rm -rf /tmp/packages /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY --from=build /out/bin/restyle-worker /usr/local/bin/
RUN mkdir -p /work && chown restyle:restyle /work
USER 10001:10001
ENV HOME=/tmp
VOLUME /work
# metrics, health
EXPOSE 8710 8711
ENTRYPOINT ["restyle-worker"]
CMD ["--front", "restyle-front:8701", "--work-dir", "/work"]

# --- worker-cuda: restyle-worker on a CUDA LibTorch ---------------------------
# The CUDA runtime, cuBLAS and cuDNN come with that LibTorch (its lib/); the
# driver comes from the node (NVIDIA's container toolkit).
FROM build AS build-cuda
ARG CUDA_KERNELS=OFF
COPY --from=libtorch . /opt/libtorch
RUN --mount=type=cache,target=/ccache \
    make build BUILD_DIR=/build-cuda \
      CMAKE_FLAGS="-DRESTYLE_BUILD_TESTS=OFF -DRESTYLE_TORCH_ROOT=/opt/libtorch -DRESTYLE_CUDA_KERNELS=${CUDA_KERNELS}" \
      BUILD_TARGETS="restyle-worker"
RUN cp /build-cuda/worker/restyle-worker /out/bin/restyle-worker-cuda \
 && LD_LIBRARY_PATH=/opt/libtorch/lib tools/runtime_packages.sh /out/bin/restyle-worker-cuda > /out/worker-cuda-packages

FROM runtime AS worker-cuda
COPY --from=build-cuda /out/worker-cuda-packages /tmp/packages
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends $(cat /tmp/packages) \
 && rm -rf /tmp/packages /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY --from=build-cuda /opt/libtorch/lib/ /opt/libtorch/lib/
COPY --from=build-cuda /out/bin/restyle-worker-cuda /usr/local/bin/restyle-worker
RUN mkdir -p /work && chown restyle:restyle /work
USER 10001:10001
ENV HOME=/tmp NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
VOLUME /work
EXPOSE 8710 8711
ENTRYPOINT ["restyle-worker"]
CMD ["--front", "restyle-front:8701", "--work-dir", "/work", "--device", "cuda"]
