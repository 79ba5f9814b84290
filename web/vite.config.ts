// Build the study list + viewer into the Python package (served by radcloud.web.routes.app_pages).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/app/",
  build: {
    outDir: "../src/radcloud/web/static/app",
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 6000, // Cornerstone3D + vtk.js are one large chunk; see the spike report
    reportCompressedSize: false,
  },
  worker: { format: "es" }, // the decode worker lazy-imports the WASM codec chunks
  optimizeDeps: {
    // dev server only (see ../shared/reference/viewer_stack.md §1)
    exclude: ["@cornerstonejs/dicom-image-loader"],
    include: [
      "dicom-parser", "comlink", "pako",
      "@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs", "@cornerstonejs/codec-charls/decodewasmjs",
      "@cornerstonejs/codec-openjpeg/decodewasmjs", "@cornerstonejs/codec-libjxl/decodewasmjs",
      "@cornerstonejs/codec-openjph/wasmjs",
      "@cornerstonejs/core", "@cornerstonejs/metadata", "@cornerstonejs/tools",
    ],
  },
  server: { proxy: { "/dicom-web": "http://127.0.0.1:8042", "/api": "http://127.0.0.1:8042", "/login": "http://127.0.0.1:8042", "/admin": "http://127.0.0.1:8042" } },
});
