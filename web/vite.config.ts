// Build the study list + viewer into the Python package (served by radcloud.web.routes.app_pages).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/app/",
  build: {
    outDir: "../src/radcloud/web/static/app",
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 6000, // Cornerstone3D + vtk.js chunks are large; see the spike report
    reportCompressedSize: false,
    rolldownOptions: {
      output: {
        // the viewer's libraries in their own chunks, fetched in parallel (and cached apart from our code,
        // which changes more often); Vite's preload helper, used by the entry, in its own tiny chunk (else
        // a library chunk captures it and the study list would load Cornerstone with it)
        codeSplitting: {
          groups: [
            { name: "preload", test: /preload-helper/, priority: 40 },
            { name: "cs-tools", test: /node_modules[\\/]@cornerstonejs[\\/]tools[\\/]/, priority: 20 },
            { name: "cs-loader", test: /node_modules[\\/](@cornerstonejs[\\/]dicom-image-loader|dicom-parser)[\\/]/, priority: 20 },
            { name: "cs-core", test: /node_modules[\\/](@cornerstonejs[\\/](core|metadata|utils)|@kitware)[\\/]/, priority: 30 },
          ],
        },
      },
    },
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
